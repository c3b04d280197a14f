// ESLint: typescript-eslint's strict, type-checked rules over every TypeScript file (a CI gate:
// `npm run lint`). Departures from the preset, each for a reason:
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      'bench-results/**',
      'coverage/**',
      'packages/**',
      '**/*.mjs',
      '**/*.js',
      'test/k8s/__rendered-manifests__.ts',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // Numbers and booleans print well in log lines and errors; objects, nullish values and
      // unknowns still need an explicit conversion.
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      // `() => void x()` noise in callbacks; a void value used as an expression elsewhere still fails.
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true }],
      // NestJS modules are classes that exist for their decorator (`@Module({…}) class M {}`, a
      // static `forRoot()`); an undecorated empty or static-only class still fails.
      '@typescript-eslint/no-extraneous-class': ['error', { allowWithDecorator: true }],
    },
  },
  {
    // Tests and benchmarks assert on values they just made: a `!` there says "the test fails
    // here if absent", which the assertion right after checks anyway. Their `afterAll(() =>
    // x?.stop())` guards run after a failed `beforeAll` left `x` unset, which the types cannot say.
    // Vitest's asymmetric matchers (`expect.stringMatching(…)`) are typed `any`. Test doubles are
    // object literals standing in for a class instance (`{} as SwarmClient`).
    files: ['test/**', 'bench/**', '**/*.spec.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unnecessary-condition': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-class-instance-assignment': 'off',
      // Fakes implement async interfaces (`async fetch() { return … }`) without awaiting anything.
      '@typescript-eslint/require-await': 'off',
    },
  },
);
