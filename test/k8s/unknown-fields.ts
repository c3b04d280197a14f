import { join } from 'node:path';
import ts from 'typescript';
import { ROOT } from '../support/app-process.js';
import type { K8sObject } from './k8s-manifests.js';

/** apiVersion/kind → the kubernetes-models module and interface that describe it. */
const MODELS: Record<string, { module: string; type: string }> = {
  'apps/v1/DaemonSet': { module: 'kubernetes-models/apps/v1/DaemonSet', type: 'IDaemonSet' },
  'apps/v1/Deployment': { module: 'kubernetes-models/apps/v1/Deployment', type: 'IDeployment' },
  'v1/Service': { module: 'kubernetes-models/v1/Service', type: 'IService' },
  'v1/ConfigMap': { module: 'kubernetes-models/v1/ConfigMap', type: 'IConfigMap' },
  'v1/Secret': { module: 'kubernetes-models/v1/Secret', type: 'ISecret' },
  'policy/v1/PodDisruptionBudget': { module: 'kubernetes-models/policy/v1/PodDisruptionBudget', type: 'IPodDisruptionBudget' },
};

const OPTIONS: ts.CompilerOptions = {
  strict: true,
  noEmit: true,
  skipLibCheck: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  lib: ['lib.es2022.d.ts'],
  types: [],
};

/**
 * Field names the Kubernetes schema does not know, at any depth. The kubernetes-models validators
 * ignore extra fields, so each object is written as an object literal typed with its
 * kubernetes-models interface and TypeScript's excess-property check names every stray key (a
 * misspelt `securityContex` would otherwise be dropped silently by the API server).
 */
export function unknownFields(objects: K8sObject[]): string[] {
  const file = join(ROOT, 'test/k8s/__rendered-manifests__.ts');
  const problems: string[] = [];
  const imports = new Set<string>();
  const owners: { start: number; name: string }[] = [];
  let body = '';
  objects.forEach((o, i) => {
    const model = MODELS[`${o.apiVersion}/${o.kind}`];
    const name = `${o.kind}/${o.metadata.name}`;
    if (!model) {
      problems.push(`${name}: no schema known for ${o.apiVersion} ${o.kind}`);
      return;
    }
    imports.add(`import type { ${model.type} } from '${model.module}';\n`);
    owners.push({ start: body.length, name });
    body += `export const o${i}: ${model.type} = ${JSON.stringify(o, null, 1)};\n`;
  });
  const head = [...imports].join('');
  const text = head + body;

  const host = ts.createCompilerHost(OPTIONS);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, language, ...rest) =>
    name === file ? ts.createSourceFile(name, text, language) : getSourceFile(name, language, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === file || fileExists(name);
  const readFile = host.readFile.bind(host);
  host.readFile = (name) => (name === file ? text : readFile(name));

  const program = ts.createProgram([file], OPTIONS, host);
  const source = program.getSourceFile(file)!;
  for (const d of [...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source)]) {
    const at = (d.start ?? 0) - head.length;
    const owner = [...owners].reverse().find((o) => o.start <= at)?.name ?? 'imports';
    problems.push(`${owner}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
  }
  return problems;
}
