// @ts-check
/**
 * Owns the lint rules (`npm run lint` runs this, then `prettier --check`; `.ci/run` runs both).
 * Layout is Prettier's alone: eslint-config-prettier, last, turns off every rule it would fight.
 * Not type-aware on purpose: the typed rule sets (recommendedTypeChecked) cost a whole type-check,
 * which on 2 cores made the lint take over a minute; `npm run build` (tsc --strict) already
 * type-checks everything.
 */
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['dist/', 'data/', 'bench/results/', 'bench/.data/', 'bench/.data-*/', 'bench/.builds/'] },
  eslint.configs.recommended,
  tseslint.configs.recommended,
  {
    languageOptions: { globals: globals.node },
    rules: {
      // A leading underscore is the house's mark for "deliberately unused": a parameter a
      // signature requires (`_identity`), a rest sibling dropped from a copy (`le: _le`), a loop
      // that only counts (`for await (const _ of rows)`).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      // Tests and benchmarks read parsed JSON replies field by field in their asserts; `any` is
      // what JSON.parse and res.json() return, and typing each reply would add only casts.
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  {
    files: ['**/*.js'],
    languageOptions: { sourceType: 'commonjs' },
    rules: {
      // scripts/*.js are plain CommonJS run by node before (or without) a build.
      '@typescript-eslint/no-require-imports': 'off',
    },
  },
  prettier,
);
