/**
 * The HTTP calls the README shows: every `curl` of its bash blocks (method, path,
 * JSON body, the statuses its `# -> <status>` note expects) and every route it names
 * in prose (`POST /devices/:id/readings`), for checking against the API document.
 */

export interface CurlCall {
  /** 1-based README line of the `curl`. */
  readonly line: number;
  readonly method: string;
  /** Path without query; shell substitutions (`$X`, `$(...)`) become `{}`. */
  readonly path: string;
  /** The `-d` argument as the shell would pass it, substitutions replaced by VAR. */
  readonly body?: string;
  /** Statuses a `# -> <status>` note right after the command names (none: 2xx expected). */
  readonly expected: readonly number[];
}

/** What a shell substitution in a body becomes: a JSON-safe marker the checker recognises. */
export const VAR = '__README_VAR__';

interface Word {
  /** The word with quotes removed and substitutions replaced by `sub`. */
  text(sub: string): string;
}

/**
 * Splits the shell text after `curl` into words, as bash would: single quotes
 * (multi-line), double quotes with `\"` and `$(...)` inside, backslash-newline
 * continuations; stops at an unquoted newline, pipe, `;`, `&&` or a `)` that
 * closes an enclosing `$(`.
 */
function curlWords(src: string, start: number): { words: Word[]; end: number } {
  const words: Word[] = [];
  let i = start;
  let parts: ({ lit: string } | { sub: true })[] | undefined;
  const flush = () => {
    if (parts) {
      const p = parts;
      words.push({ text: (sub) => p.map((x) => ('lit' in x ? x.lit : sub)).join('') });
    }
    parts = undefined;
  };
  const lit = (s: string) => (parts ??= []).push({ lit: s });
  /** Skips a `$(...)` (nested parens and quotes), returns the index after it. */
  const skipSubst = (j: number): number => {
    let depth = 0;
    for (; j < src.length; j++) {
      const c = src[j]!;
      if (c === "'") j = src.indexOf("'", j + 1);
      else if (c === '"') {
        for (j++; j < src.length && src[j] !== '"'; j++) if (src[j] === '\\') j++;
      } else if (c === '(') depth++;
      else if (c === ')' && --depth === 0) return j + 1;
    }
    return j;
  };
  const variable = (j: number): number => {
    // at '$': $(...), ${...} or $NAME
    (parts ??= []).push({ sub: true });
    if (src[j + 1] === '(') return skipSubst(j + 1);
    if (src[j + 1] === '{') return src.indexOf('}', j) + 1;
    let k = j + 1;
    while (k < src.length && /[A-Za-z0-9_]/.test(src[k]!)) k++;
    return k;
  };
  while (i < src.length) {
    const c = src[i]!;
    if (c === '\\' && src[i + 1] === '\n') {
      i += 2;
      continue;
    }
    if (c === ' ' || c === '\t') {
      flush();
      i++;
      continue;
    }
    if (c === '\n' || c === '|' || c === ';' || c === ')' || c === '#' || (c === '&' && src[i + 1] === '&')) break;
    if (c === "'") {
      const close = src.indexOf("'", i + 1);
      lit(src.slice(i + 1, close));
      i = close + 1;
      continue;
    }
    if (c === '"') {
      i++;
      while (i < src.length && src[i] !== '"') {
        if (src[i] === '\\') {
          lit(src[i + 1]!);
          i += 2;
        } else if (src[i] === '$') i = variable(i);
        else lit(src[i++]!);
      }
      i++;
      continue;
    }
    if (c === '$') {
      i = variable(i);
      continue;
    }
    lit(c);
    i++;
  }
  flush();
  return { words, end: i };
}

/** Every curl against the app in the README's bash blocks. */
export function readmeCurls(readme: string): CurlCall[] {
  const calls: CurlCall[] = [];
  const lines = readme.split('\n');
  let offset = 0;
  const lineStarts = lines.map((l) => {
    const at = offset;
    offset += l.length + 1;
    return at;
  });
  const lineOf = (index: number) => {
    let n = 0;
    while (n + 1 < lineStarts.length && lineStarts[n + 1]! <= index) n++;
    return n + 1;
  };
  for (const block of readme.matchAll(/^```bash\n([\s\S]*?)^```/gm)) {
    const base = block.index + block[0].indexOf('\n') + 1;
    const text = block[1]!;
    for (const m of text.matchAll(/\bcurl\s/g)) {
      const { words, end } = curlWords(text, m.index + 4);
      const args = words.map((w) => w.text(VAR));
      const url = args.find((a) => a.startsWith('localhost:3000'));
      if (!url) continue;
      let method: string | undefined;
      let body: string | undefined;
      for (let k = 0; k < args.length; k++) {
        const a = args[k]!;
        if (a === '-X') method = args[k + 1];
        else if (a.startsWith('-X') && a.length > 2) method = a.slice(2);
        else if (a === '-d' || a === '--data') body = args[k + 1];
      }
      const path = url.slice('localhost:3000'.length).split('?')[0]!.replaceAll(VAR, '{}');
      // A `# -> 201 or 409` note on the command's last line or on the lines right below it.
      const after = text.slice(end).split('\n');
      const note = [
        after[0] ?? '',
        ...after.slice(1).filter((_, i, all) => all.slice(0, i + 1).every((x) => x.trim().startsWith('#'))),
      ]
        .join('\n')
        .match(/#\s*->\s*([0-9]{3}(?:\s*(?:or|,)\s*[0-9]{3})*)/);
      calls.push({
        line: lineOf(base + m.index),
        method: (method ?? (body !== undefined ? 'POST' : 'GET')).toUpperCase(),
        path: path || '/',
        ...(body !== undefined ? { body } : {}),
        expected: note ? [...note[1]!.matchAll(/[0-9]{3}/g)].map((x) => Number(x[0])) : [],
      });
    }
  }
  return calls;
}

/** Routes the README names in prose: `GET /admin/projections[/:name]`, `POST /admin/projections/:name/{rebuild,retry}`. */
export function readmeProseRoutes(readme: string): { method: string; path: string }[] {
  const out: { method: string; path: string }[] = [];
  for (const m of readme.matchAll(/`(GET|POST|PATCH|PUT|DELETE) (\/[^`\s]*)`/g)) {
    let variants = [m[2]!.split('?')[0]!];
    // [/:name] is optional; {a,b} is one route each.
    variants = variants.flatMap((v) => {
      const opt = /\[([^\]]*)\]/.exec(v);
      return opt ? [v.replace(opt[0], ''), v.replace(opt[0], opt[1]!)] : [v];
    });
    variants = variants.flatMap((v) => {
      const alt = /\{([^}]*,[^}]*)\}/.exec(v);
      return alt ? alt[1]!.split(',').map((a) => v.replace(alt[0], a)) : [v];
    });
    for (const v of variants) out.push({ method: m[1]!, path: v.replace(/:[A-Za-z]+/g, '{}') });
  }
  return out;
}

/**
 * The document's path a concrete path is served by: a literal path first, else
 * the templated one whose literal segments all match. `{}` (a README variable)
 * matches only a template segment.
 */
export function matchPath(paths: readonly string[], path: string): string | undefined {
  if (paths.includes(path)) return path;
  const segs = path.split('/');
  const candidates = paths.filter((p) => {
    const t = p.split('/');
    return (
      t.length === segs.length &&
      t.every((s, i) => (s.startsWith('{') ? segs[i] !== '' : s === segs[i] && segs[i] !== '{}'))
    );
  });
  // The most literal template wins, as OpenAPI's path matching says.
  candidates.sort((a, b) => (b.match(/\/[^{/][^/]*/g)?.length ?? 0) - (a.match(/\/[^{/][^/]*/g)?.length ?? 0));
  return candidates[0];
}
