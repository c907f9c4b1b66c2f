// Lint for every package. `core` and `policy` are pure: no I/O modules may be imported there
// (the same rule is checked by test/dependency-direction.test.js over package.json too).
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

const IO_MODULES = [
  'fs', 'node:fs', 'fs/promises', 'node:fs/promises', 'net', 'node:net', 'dgram', 'node:dgram', 'http', 'node:http',
  'https', 'node:https', 'child_process', 'node:child_process', 'dns', 'node:dns', 'tls', 'node:tls', 'worker_threads',
  'node:worker_threads', 'cluster', 'node:cluster', 'ioredis', 'libp2p', 'pino', 'commander',
]

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', 'bench/**', '.turbo/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['packages/*/src/**/*.ts', 'packages/*/test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-constant-condition': ['error', { checkLoops: false }],
      eqeqeq: ['error', 'always', { null: 'ignore' }],
    },
  },
  {
    files: ['packages/core/src/**/*.ts', 'packages/policy/src/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { paths: IO_MODULES.map((name) => ({ name, message: 'core and policy are pure: no I/O.' })) }],
      'no-console': 'error',
    },
  },
)
