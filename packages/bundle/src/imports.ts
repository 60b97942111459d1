import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { PideployError } from '@pideploy/core';

/** A relative path literal found in a Nix file. */
export interface NixPathLiteral {
  /** As written, e.g. `./hardware.nix`. */
  readonly literal: string;
  /** 1-based line. */
  readonly line: number;
  /** True for `builtins.pathExists ./x` / `pathExists ./x`: a missing file is fine there. */
  readonly optional: boolean;
}

/** What {@link scanNixPathLiterals} found in one file. */
export interface NixPathScan {
  /** Relative path literals (`./a.nix`, `../b`, `dir/c.nix`). */
  readonly paths: readonly NixPathLiteral[];
  /** Search-path literals (`<nixpkgs>`), with their lines. */
  readonly searchPaths: readonly { readonly name: string; readonly line: number }[];
}

const PATH_LITERAL = /^(?:\.\.?|[A-Za-z0-9._+-]+)(?:\/[A-Za-z0-9._+-]+)+\/?/u;
const URI_LITERAL = /^[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9%/?:@&=+$,_.!~*'-]+/u;
const SEARCH_PATH = /^<([A-Za-z0-9._+-]+(?:\/[A-Za-z0-9._+-]+)*)>/u;
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_'-]*(?:\.[A-Za-z_][A-Za-z0-9_'-]*)*/u;

/**
 * Finds the relative path literals of a Nix file by lexing it as Nix does: skips comments and
 * the text of strings (but not their `${…}` antiquotations), tells URIs from paths, and notes
 * `<search paths>`. Absolute and `~/` paths are not reported (they are not local to a project).
 */
export function scanNixPathLiterals(text: string): NixPathScan {
  const paths: NixPathLiteral[] = [];
  const searchPaths: { name: string; line: number }[] = [];
  let index = 0;
  let line = 1;
  let previousIdentifier = '';
  // Stack of contexts: 'code' (inside ${…} we count braces), 'string' ("…"), 'indented' (''…'').
  const stack: { kind: 'code' | 'string' | 'indented'; braces: number }[] = [{ kind: 'code', braces: 0 }];
  const advance = (count: number): void => {
    for (let offset = 0; offset < count; offset += 1) if (text[index + offset] === '\n') line += 1;
    index += count;
  };
  while (index < text.length) {
    const top = stack[stack.length - 1] ?? { kind: 'code', braces: 0 };
    const rest = text.slice(index, index + 300);
    if (top.kind === 'string') {
      if (rest.startsWith('\\')) advance(2);
      else if (rest.startsWith('${')) {
        stack.push({ kind: 'code', braces: 0 });
        advance(2);
      } else if (rest.startsWith('"')) {
        stack.pop();
        advance(1);
      } else advance(1);
      continue;
    }
    if (top.kind === 'indented') {
      if (rest.startsWith("'''") || rest.startsWith("''$") || rest.startsWith("''\\")) advance(3);
      else if (rest.startsWith("''")) {
        stack.pop();
        advance(2);
      } else if (rest.startsWith('${')) {
        stack.push({ kind: 'code', braces: 0 });
        advance(2);
      } else advance(1);
      continue;
    }
    // code
    const char = text[index] ?? '';
    if (char === '#') {
      const end = text.indexOf('\n', index);
      advance((end === -1 ? text.length : end) - index);
      continue;
    }
    if (rest.startsWith('/*')) {
      const end = text.indexOf('*/', index + 2);
      advance((end === -1 ? text.length : end + 2) - index);
      continue;
    }
    if (char === '"') {
      stack.push({ kind: 'string', braces: 0 });
      advance(1);
      continue;
    }
    if (rest.startsWith("''")) {
      stack.push({ kind: 'indented', braces: 0 });
      advance(2);
      continue;
    }
    if (char === '{') {
      top.braces += 1;
      advance(1);
      continue;
    }
    if (char === '}') {
      if (top.braces === 0 && stack.length > 1) stack.pop();
      else top.braces -= 1;
      advance(1);
      continue;
    }
    const search = SEARCH_PATH.exec(rest);
    if (search !== null && search[1] !== undefined) {
      searchPaths.push({ name: search[1], line });
      advance(search[0].length);
      continue;
    }
    const previous = index === 0 ? '' : (text[index - 1] ?? '');
    if (!/[A-Za-z0-9_'.+-]/u.test(previous)) {
      const uri = URI_LITERAL.exec(rest);
      if (uri !== null) {
        advance(uri[0].length);
        previousIdentifier = '';
        continue;
      }
      const pathMatch = PATH_LITERAL.exec(rest);
      if (pathMatch !== null) {
        // `./dir/${name}.nix`: an interpolated path cannot be followed statically.
        if (!text.startsWith('${', index + pathMatch[0].length)) {
          paths.push({ literal: pathMatch[0], line, optional: /(?:^|\.)pathExists$/u.test(previousIdentifier) });
        }
        advance(pathMatch[0].length);
        previousIdentifier = '';
        continue;
      }
      const identifier = IDENTIFIER.exec(rest);
      if (identifier !== null) {
        previousIdentifier = identifier[0];
        advance(identifier[0].length);
        continue;
      }
    }
    if (!/\s/u.test(char) && char !== '(') previousIdentifier = '';
    advance(1);
  }
  return { paths, searchPaths };
}

/** Options of {@link collectConfigurationFiles}. */
export interface CollectConfigurationFilesOptions {
  /** Files outside this directory are an error (default: the configuration's directory). */
  readonly projectDir?: string | undefined;
  /** Allow files outside `projectDir` (they are bundled under their common ancestor). */
  readonly allowOutsideProject?: boolean | undefined;
}

/** The local files a configuration consists of. */
export interface ConfigurationFiles {
  /** The configuration file (absolute). */
  readonly configuration: string;
  /** The directory every file is relative to in the bundle (absolute). */
  readonly root: string;
  /** Every file, relative to `root`, sorted; includes the configuration itself. */
  readonly files: readonly string[];
  /** `<name>` search paths the files use (a pinned build cannot resolve them). */
  readonly searchPaths: readonly { readonly file: string; readonly line: number; readonly name: string }[];
}

async function kindOf(file: string): Promise<'file' | 'directory' | undefined> {
  try {
    const stats = await stat(file);
    return stats.isDirectory() ? 'directory' : 'file';
  } catch {
    return undefined;
  }
}

async function listTree(directory: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(directory, { withFileTypes: true })) {
    const full = path.join(directory, entry.name);
    if (entry.isDirectory()) out.push(...(await listTree(full)));
    else out.push(full);
  }
  return out;
}

function isInside(directory: string, file: string): boolean {
  const relative = path.relative(directory, file);
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
}

function commonAncestor(files: readonly string[]): string {
  let ancestor = path.dirname(files[0] ?? '/');
  for (const file of files) while (!isInside(ancestor, file)) ancestor = path.dirname(ancestor);
  return ancestor;
}

/**
 * Follows a configuration's relative path literals recursively (`imports = [ ./hw.nix ]`,
 * `./keys/id.pub`, `./modules` → every file under it): every `.nix` file reached is scanned
 * too. A missing file is an error naming the importing file and line (unless only tested with
 * `pathExists`); a file outside the project is an error unless allowed.
 * @throws PideployError `PIDEPLOY_BUNDLE_MISSING_FILE`, `PIDEPLOY_BUNDLE_OUTSIDE_PROJECT`.
 */
export async function collectConfigurationFiles(configuration: string, options: CollectConfigurationFilesOptions = {}): Promise<ConfigurationFiles> {
  const start = path.resolve(configuration);
  const projectDir = path.resolve(options.projectDir ?? path.dirname(start));
  if ((await kindOf(start)) !== 'file') {
    throw new PideployError({
      code: 'PIDEPLOY_BUNDLE_MISSING_FILE',
      message: `the configuration ${start} does not exist`,
      hint: 'check "configuration" of the host in pideploy.json, or --configuration',
    });
  }
  const seen = new Set<string>([start]);
  const queue = [start];
  const searchPaths: { file: string; line: number; name: string }[] = [];
  while (queue.length > 0) {
    const file = queue.shift() as string;
    const scan = scanNixPathLiterals(await readFile(file, 'utf8'));
    for (const search of scan.searchPaths) searchPaths.push({ file, line: search.line, name: search.name });
    for (const literal of scan.paths) {
      const target = path.resolve(path.dirname(file), literal.literal);
      const kind = await kindOf(target);
      if (kind === undefined) {
        if (literal.optional) continue;
        throw new PideployError({
          code: 'PIDEPLOY_BUNDLE_MISSING_FILE',
          message: `${file}:${literal.line} refers to ${literal.literal}, which does not exist (${target})`,
          hint: `create ${target}, or remove the reference from ${path.basename(file)}`,
        });
      }
      if (!isInside(projectDir, target) && options.allowOutsideProject !== true) {
        throw new PideployError({
          code: 'PIDEPLOY_BUNDLE_OUTSIDE_PROJECT',
          message: `${file}:${literal.line} refers to ${literal.literal} (${target}), outside the project ${projectDir}`,
          hint: 'move the file into the project (the bundle must hold everything the configuration needs), or allow files outside the project',
        });
      }
      const reached = kind === 'directory' ? await listTree(target) : [target];
      for (const reachedFile of reached) {
        if (seen.has(reachedFile)) continue;
        seen.add(reachedFile);
        if (reachedFile.endsWith('.nix')) queue.push(reachedFile);
      }
    }
  }
  const all = [...seen];
  const root = all.every((file) => isInside(path.dirname(start), file)) ? path.dirname(start) : commonAncestor(all);
  return {
    configuration: start,
    root,
    files: all.map((file) => path.relative(root, file)).sort(),
    searchPaths,
  };
}
