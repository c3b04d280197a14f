// Writes containerd's certs.d/<host>/hosts.toml for every registry the agent accelerates, so
// workloads keep their original image names and containerd asks localhost:5004 first.
//   node hosts-toml.mjs write    sync the files with the agent config (default)
//   node hosts-toml.mjs remove   delete every file this script wrote (uninstall)
// Only files carrying MARKER are ever replaced or deleted: a hosts.toml the node admin wrote is
// left alone, with a warning.
// Env: P2P_AGENT_CONFIG (agent YAML), CERTS_D (containerd config_path as mounted here), MIRROR
// (mirror base URL), YAML_FROM (a package.json whose node_modules has `yaml`).
import { mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const MARKER = '# managed-by: p2p-agent containerd-mirror';
const configFile = process.env.P2P_AGENT_CONFIG ?? '/etc/p2p/config/agent.yaml';
const certsDir = process.env.CERTS_D ?? '/host/etc/containerd/certs.d';
const mirror = process.env.MIRROR ?? 'http://localhost:5004';
const yamlFrom = process.env.YAML_FROM ?? '/app/package.json';
// containerd looks Docker Hub images up under "docker.io", whatever API host serves them.
const DOCKER_HUB = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

function fail(message) {
  process.stderr.write(`hosts-toml: ${message}\n`);
  process.exit(1);
}

/** Registry URL → [certs.d directory name, server URL]. */
function hostEntry(url) {
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    fail(`not a URL in ${configFile}: ${url}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') fail(`not an http(s) URL in ${configFile}: ${url}`);
  if (DOCKER_HUB.has(parsed.hostname) && parsed.port === '') return ['docker.io', 'https://registry-1.docker.io'];
  return [parsed.host, parsed.origin];
}

function desiredHosts() {
  const { parse } = createRequire(yamlFrom)('yaml');
  let config;
  try {
    config = parse(readFileSync(configFile, 'utf8')) ?? {};
  } catch (err) {
    fail(`cannot read ${configFile}: ${err.message}`);
  }
  const urls = [config.registry, ...(Array.isArray(config.registries) ? config.registries : [])].filter((u) => typeof u === 'string');
  return new Map(urls.map(hostEntry));
}

function hostsToml(server) {
  return `${MARKER} (edit the p2p-agent ConfigMap instead)
server = "${server}"

[host."${mirror}"]
  capabilities = ["pull", "resolve"]
`;
}

function readIfExists(file) {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  }
}

function managedHosts() {
  let dirs = [];
  try {
    dirs = readdirSync(certsDir, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name);
  } catch (err) {
    if (err.code !== 'ENOENT') throw err;
  }
  return dirs.filter((name) => readIfExists(join(certsDir, name, 'hosts.toml'))?.startsWith(MARKER));
}

function remove(host) {
  rmSync(join(certsDir, host, 'hosts.toml'), { force: true });
  try {
    rmdirSync(join(certsDir, host));
  } catch {
    // Not empty: the node admin keeps certificates there.
  }
  console.log(`removed ${join(certsDir, host, 'hosts.toml')}`);
}

function write() {
  const desired = desiredHosts();
  for (const [host, server] of desired) {
    const file = join(certsDir, host, 'hosts.toml');
    const current = readIfExists(file);
    if (current !== undefined && !current.startsWith(MARKER)) {
      console.warn(`left ${file} alone: it was not written by p2p-agent`);
      continue;
    }
    const text = hostsToml(server);
    if (current === text) continue;
    mkdirSync(join(certsDir, host), { recursive: true, mode: 0o755 });
    // Rename into place: containerd reads hosts.toml on every pull and must never see half a file.
    writeFileSync(`${file}.tmp`, text, { mode: 0o644 });
    renameSync(`${file}.tmp`, file);
    console.log(`wrote ${file}: ${server} via ${mirror}`);
  }
  for (const host of managedHosts()) if (!desired.has(host)) remove(host);
}

const mode = process.argv[2] ?? 'write';
if (mode === 'write') write();
else if (mode === 'remove') managedHosts().forEach(remove);
else fail(`unknown mode "${mode}" (write or remove)`);
