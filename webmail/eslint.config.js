// ESLint for the webmail (npm run lint; CI runs it). TypeScript 7 has no
// JavaScript API, so typescript-eslint (which needs TypeScript < 6.1) cannot
// parse here; Babel's parser reads the TSX syntax instead, and tsc -b (strict,
// noUnused*) keeps the type-aware checks. ESLint adds the rules of hooks,
// exhaustive effect dependencies and the core correctness rules.
import js from '@eslint/js';
import babelParser from '@babel/eslint-parser';
import reactHooks from 'eslint-plugin-react-hooks';
import globals from 'globals';

export default [
  { linterOptions: { reportUnusedDisableDirectives: 'error' } },
  { ignores: ['node_modules/**', '../webui/**', 'dist/**'] },
  js.configs.recommended,
  {
    files: ['**/*.{ts,tsx,js,mjs}'],
    languageOptions: {
      parser: babelParser,
      parserOptions: {
        requireConfigFile: false,
        babelOptions: { babelrc: false, configFile: false, parserOpts: { plugins: ['jsx', 'typescript'] } },
      },
      globals: { ...globals.browser, ...globals.node, ...globals.serviceworker },
    },
    plugins: { 'react-hooks': reactHooks },
    rules: {
      // The rules of hooks and effect dependencies; not the React Compiler's
      // rules (refs read in render, setState in effects), as the app is not
      // compiled by it and uses the "latest value in a ref" idiom on purpose.
      'react-hooks/rules-of-hooks': 'error',
      'react-hooks/exhaustive-deps': 'error',
      // Types are names ESLint's scope analysis does not see (type-only
      // imports, parameters of function types): tsc checks both.
      'no-undef': 'off',
      'no-unused-vars': 'off',
      'no-redeclare': 'off',
      eqeqeq: ['error', 'always'],
      'no-console': ['error', { allow: ['error'] }],
      'prefer-const': 'error',
      'no-var': 'error',
    },
  },
  { files: ['e2e/**', 'scripts/**'], rules: { 'no-console': 'off' } },
  { files: ['sw/**'], languageOptions: { globals: { ...globals.serviceworker, __PRECACHE__: 'readonly', __VERSION__: 'readonly' } } },
];
