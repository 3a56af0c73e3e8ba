// ESLint: typescript-eslint type-checked rules; domain/ stays pure.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.data/**', 'coverage/**', '*.js', '*.mjs', '*.cjs', 'scripts/*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  {
    // Error codes are spelled out only in each context's catalogue (`*-errors.ts`): a code in a
    // catalogue is findable, documented and cannot drift by a typo. Tests keep literal codes on
    // purpose: they assert exactly what a client sees, so a renamed constant cannot hide a changed code.
    files: ['**/*.ts'],
    ignores: ['**/*-errors.ts', 'test/**', '**/*.spec.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: 'Literal[value=/^(AUTH|PLATFORM|IDENTITY|SALES|TELEMETRY)\\.[A-Z_]+$/]',
          message:
            "Error codes live in their context's catalogue (*-errors.ts): use e.g. IdentityErrorCode.USER_NOT_FOUND.",
        },
        {
          selector: 'TemplateElement[value.raw=/^(AUTH|PLATFORM|IDENTITY|SALES|TELEMETRY)\\.[A-Z_]+$/]',
          message: "Error codes live in their context's catalogue (*-errors.ts).",
        },
      ],
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts', '**/*.spec.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/unbound-method': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  {
    files: ['domain/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: [
                '@nestjs/*',
                'pg',
                'pg-*',
                'ioredis',
                'bullmq',
                'mqtt',
                'aedes',
                'node:*',
                '../../src/*',
                '../src/*',
              ],
              message: 'domain/ is pure: no frameworks, drivers or I/O.',
            },
          ],
        },
      ],
    },
  },
);
