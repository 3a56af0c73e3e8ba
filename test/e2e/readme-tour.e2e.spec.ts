import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pickPort } from '../../src/platform/local/processes';
import { MAIN, spawnApp, type AppProcess } from '../support/processes';
import { createTestDatabase, removeDataDir, testRedisUrl, type TestDatabase } from '../support/services';

/**
 * The README's tour, run as written: the shell blocks of its tour sections
 * (the 5-minute tour and its CLI part, MQTT, sales) go into one bash script, in
 * README order, against a started app. Only the address changes
 * (localhost:3000 and the broker's port become this app's) and the
 * `npm run up &` line is left out (the test started the app with the same
 * ADMIN_EMAIL / ADMIN_PASSWORD). The script stops at the first failing
 * command (`set -euo pipefail`); every curl answer must be 2xx unless the
 * README says otherwise in a comment `# -> <status>[ or <status>]` on the
 * command's last line or right below it; a few printed claims are checked
 * against what was printed.
 */
const ROOT = join(__dirname, '../..');
const TOUR_SECTIONS = ['A 5-minute tour', 'Telemetry (MQTT)', 'Sales: catalogue, stock, orders and the saga'];

interface Block {
  section: string;
  /** 1-based README line of each line of the block. */
  lines: { no: number; text: string }[];
}

function tourBlocks(readme: string): Block[] {
  const blocks: Block[] = [];
  let section = '';
  let open: Block | undefined;
  readme.split('\n').forEach((text, i) => {
    if (open) {
      if (text.startsWith('```')) {
        blocks.push(open);
        open = undefined;
      } else {
        open.lines.push({ no: i + 1, text });
      }
      return;
    }
    const heading = /^## (.*)$/.exec(text);
    if (heading) section = heading[1]!.trim();
    if (text.trim() === '```bash' && TOUR_SECTIONS.includes(section)) open = { section, lines: [] };
  });
  return blocks;
}

/**
 * The commands of a block as spans of lines: a command goes on over a trailing
 * backslash, an open quote or an open `$(`, as bash reads it.
 */
function commandSpans(lines: Block['lines']): { start: number; end: number }[] {
  const spans: { start: number; end: number }[] = [];
  const stack: ("'" | '"' | '(')[] = [];
  let start = -1;
  lines.forEach((l, i) => {
    const text = l.text;
    if (start < 0) {
      if (text.trim() === '' || text.trim().startsWith('#')) return;
      start = i;
    }
    for (let c = 0; c < text.length; c++) {
      const ch = text[c]!;
      const top = stack[stack.length - 1];
      if (top === "'") {
        if (ch === "'") stack.pop();
      } else if (ch === '\\') {
        c++;
      } else if (top === '"') {
        if (ch === '"') stack.pop();
        else if (ch === '$' && text[c + 1] === '(') {
          stack.push('(');
          c++;
        }
      } else if (ch === "'" || ch === '"') {
        stack.push(ch);
      } else if (ch === '(') {
        stack.push('(');
      } else if (ch === ')' && top === '(') {
        stack.pop();
      } else if (ch === '#' && (c === 0 || /\s/.test(text[c - 1]!))) {
        break;
      }
    }
    if (stack.length === 0 && !text.trimEnd().endsWith('\\')) {
      spans.push({ start, end: i });
      start = -1;
    }
  });
  return spans;
}

/**
 * `# -> 201 or 409 …`, on a command's line or on a comment line right below it:
 * the statuses its curl may answer (bash reports a call on the first or the
 * last line of a command that spans several, so every line of it gets them).
 */
function expectations(blocks: Block[]): Map<number, string[]> {
  const expected = new Map<number, string[]>();
  for (const b of blocks) {
    const spans = commandSpans(b.lines);
    b.lines.forEach((l, i) => {
      const m = /#\s*->\s*(\d{3}(?:\s+or\s+\d{3})*)/.exec(l.text);
      if (!m) return;
      const statuses = m[1]!.split(/\s+or\s+/);
      const span = l.text.trim().startsWith('#')
        ? spans.filter((sp) => sp.end < i).pop()
        : spans.find((sp) => sp.start <= i && i <= sp.end);
      if (!span) throw new Error(`README line ${l.no}: an expected status with no command before it`);
      for (let k = span.start; k <= span.end; k++) expected.set(b.lines[k]!.no, statuses);
    });
  }
  return expected;
}

/** The README's lines at their own line numbers (so bash's line numbers are the README's), rewritten to this app's address. */
function script(blocks: Block[], total: number, app: { http: number; mqtt: number }): string {
  const out: string[] = new Array<string>(total).fill('');
  out[0] = 'source "$TOUR_PRELUDE"';
  for (const b of blocks) {
    for (const l of b.lines) {
      let text = l.text
        .replaceAll('localhost:3000', `127.0.0.1:${app.http}`)
        .replaceAll('-h localhost', `-h 127.0.0.1 -p ${app.mqtt}`);
      // The app is started by the test; everything else on the line is kept.
      if (/\bnpm run up\b/.test(text)) text = ': started by the test';
      out[l.no - 1] = text;
    }
  }
  return out.join('\n') + '\n';
}

/**
 * Sourced on line 1: strict mode, and a curl that records, per README line, the
 * HTTP status and body of each call, and counts a status the README does not
 * expect as a failure (after printing the body, as curl would have).
 */
function prelude(expected: Map<number, string[]>, callDir: string): string {
  const table = [...expected].map(([line, statuses]) => `[${line}]="${statuses.join(' ')}"`).join(' ');
  return `set -euo pipefail
declare -A TOUR_EXPECT=(${table})
curl() {
  local line=\${BASH_LINENO[0]} out status rc=0
  out=$(mktemp "${callDir}/$line.XXXXXX")
  status=$(command curl -o "$out" -w '%{http_code}' "$@") || rc=$?
  printf '%s %s\\n' "$status" "$rc" > "$out.meta"
  cat "$out"
  local allowed=\${TOUR_EXPECT[$line]:-2xx}
  # --max-time on an event stream ends it on purpose (curl exit 28).
  if [ "$rc" -eq 28 ] && [[ " $* " == *" --max-time "* ]]; then rc=0; fi
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 22 ]; then echo "README line $line: curl failed ($rc)" >&2; return "$rc"; fi
  if [ "$allowed" = 2xx ]; then [[ "$status" == 2?? ]] && return 0
  else [[ " $allowed " == *" $status "* ]] && return 0; fi
  echo "README line $line: HTTP $status, the README expects $allowed" | tee -a "${callDir}/violations" >&2
  return 1
}
`;
}

interface Call {
  line: number;
  status: string;
  body: string;
}

function calls(callDir: string): Call[] {
  return readdirSync(callDir)
    .filter((f) => /^\d+\.\w+$/.test(f))
    .map((f) => {
      const [status = ''] = readFileSync(join(callDir, `${f}.meta`), 'utf8')
        .trim()
        .split(' ');
      return { line: Number(f.split('.')[0]), status, body: readFileSync(join(callDir, f), 'utf8') };
    });
}

let db: TestDatabase;
let app: AppProcess;
let dataDir: string;
let mqttPort: number;
const readmeText = readFileSync(join(ROOT, 'README.md'), 'utf8');
const readmeLines = readmeText.split('\n');
const blocks = tourBlocks(readmeText);

/** The README line holding `needle` inside a tour block. */
function lineOf(needle: string): number {
  const hit = blocks.flatMap((b) => b.lines).find((l) => l.text.includes(needle));
  if (!hit) throw new Error(`the README tour no longer has a line with ${needle}`);
  return hit.no;
}

/** Every README line of the command that holds line `no`. */
function commandLines(no: number): number[] {
  for (const b of blocks) {
    const i = b.lines.findIndex((l) => l.no === no);
    if (i < 0) continue;
    const span = commandSpans(b.lines).find((sp) => sp.start <= i && i <= sp.end);
    return span ? b.lines.slice(span.start, span.end + 1).map((l) => l.no) : [no];
  }
  return [no];
}

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build first (npx tsc -p tsconfig.json)`);
  expect(blocks.map((b) => b.section)).toEqual([
    TOUR_SECTIONS[0],
    TOUR_SECTIONS[0],
    TOUR_SECTIONS[1],
    TOUR_SECTIONS[2],
  ]);
  const first = blocks[0]!.lines.find((l) => /\bnpm run up\b/.test(l.text));
  const admin = first && /ADMIN_EMAIL=(\S+) ADMIN_PASSWORD='([^']+)'/.exec(first.text);
  if (!admin) throw new Error("the tour no longer starts with ADMIN_EMAIL=… ADMIN_PASSWORD='…' npm run up &");
  db = await createTestDatabase('tour', { migrate: false });
  dataDir = mkdtempSync(join(tmpdir(), 'readme-tour-'));
  mqttPort = await pickPort();
  app = await spawnApp(
    'tour',
    {
      DATABASE_URL: db.url,
      REDIS_URL: testRedisUrl(),
      DATA_DIR: dataDir,
      QUEUE_PREFIX: `tour-${db.name}`,
      MQTT_PORT: String(mqttPort),
      MQTT_HOST: '127.0.0.1',
      ADMIN_EMAIL: admin[1]!,
      ADMIN_PASSWORD: admin[2]!,
      LOG_LEVEL: 'info',
    },
    { keep: /admin account/ },
  );
  await app.ready(120_000);
});

afterAll(async () => {
  if (app?.alive()) await app.kill();
  await db?.drop();
  if (dataDir) removeDataDir(dataDir);
});

it('the README tour runs as written, end to end, and prints what it says', async () => {
  const work = mkdtempSync(join(tmpdir(), 'readme-tour-run-'));
  const callDir = join(work, 'calls');
  mkdirSync(callDir);
  const expected = expectations(blocks);
  writeFileSync(join(work, 'prelude.sh'), prelude(expected, callDir));
  writeFileSync(join(work, 'tour.sh'), script(blocks, readmeLines.length, { http: app.port, mqtt: mqttPort }));

  // Its own process group, so the background jobs the tour starts (mosquitto_sub) end with it.
  const shell = spawn('bash', [join(work, 'tour.sh')], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    // The CLI part reaches the same database, Redis and DATA_DIR as the app, as it would with the defaults.
    env: {
      ...process.env,
      TOUR_PRELUDE: join(work, 'prelude.sh'),
      DATABASE_URL: db.url,
      REDIS_URL: testRedisUrl(),
      DATA_DIR: dataDir,
      QUEUE_PREFIX: `tour-${db.name}`,
    },
  });
  let output = '';
  shell.stdout.on('data', (d: Buffer) => {
    output += d.toString();
  });
  shell.stderr.on('data', (d: Buffer) => {
    output += d.toString();
  });
  const code = await new Promise<number | null>((res) => shell.once('exit', (c) => res(c)));
  try {
    process.kill(-shell.pid!, 'SIGTERM');
  } catch {
    /* no job left */
  }

  try {
    const violations = existsSync(join(callDir, 'violations')) ? readFileSync(join(callDir, 'violations'), 'utf8') : '';
    if (code !== 0 || violations)
      throw new Error(
        `the tour failed (bash exit ${String(code)}):\n${violations}\n--- its output:\n${output}\n--- the app's log:\n${app.tail()}`,
      );

    const made = calls(callDir);
    const at = (needle: string) => {
      const line = lineOf(needle);
      const lines = commandLines(line);
      const hit = made.filter((c) => lines.includes(c.line));
      if (hit.length === 0) throw new Error(`no curl ran on README line ${line} (${needle})`);
      return hit[hit.length - 1]!;
    };
    // Every command of the tour blocks that calls the API did so.
    expect(made.length).toBeGreaterThanOrEqual(30);

    // "postgres, redis, eventStore, projections, jobs: all ok"
    const health = JSON.parse(at('curl -s localhost:3000/health | jq').body) as {
      components: Record<string, { status: string }>;
    };
    expect(Object.fromEntries(Object.entries(health.components).map(([k, v]) => [k, v.status]))).toEqual({
      postgres: 'ok',
      redis: 'ok',
      eventStore: 'ok',
      projections: 'ok',
      jobs: 'ok',
    });

    // "one line confirms the admin account ADMIN_EMAIL (created, or given the admin role)"
    expect(
      app.kept.filter((l) =>
        l.includes(
          `admin account ${blocks[0]!.lines.map((x) => /ADMIN_EMAIL=(\S+)/.exec(x.text)?.[1]).find(Boolean)!}`,
        ),
      ),
    ).toHaveLength(1);

    // The list of commands in the README is the app's list.
    const commandsLine = lineOf('curl -s localhost:3000/commands | jq -c .commands');
    const claimed = /# -> (\[.*\])/.exec(readmeLines[commandsLine - 1 + 1]!)?.[1]; // the annotation line below it
    expect(claimed).toBeDefined();
    expect(
      (JSON.parse(at('curl -s localhost:3000/commands | jq -c .commands').body) as { commands: string[] }).commands,
    ).toEqual(JSON.parse(claimed!));

    // The validation examples name the email rule, and the missing fields.
    const bad = JSON.parse(at('"email":"nope","password"').body) as { status: number; errors: { field: string }[] };
    expect(bad.status).toBe(400);
    expect(bad.errors.map((e) => e.field)).toEqual(['email']);
    const missing = JSON.parse(at(`-d '{"email":"nope"}'`).body) as { errors: { field: string }[] };
    expect(missing.errors.map((e) => e.field).sort()).toEqual(['name', 'password']);

    // The reading published with mosquitto_pub is the latest temperature, and the stream replays the history.
    expect(JSON.parse(at('metrics/temp/latest').body)).toMatchObject({ value: 21.5 });
    const events = at('metrics/temp/stream').body;
    expect(events).toContain('event: reading');
    expect(events).toContain('"value":21.5');
    expect(events).toContain('"value":22');

    // "price 44.91, available 5"
    const catalogue = JSON.parse(at('products?channel=web&minPosition').body) as {
      items: { price: number; available: number }[];
    };
    expect(catalogue.items[0]).toMatchObject({ price: 44.91, available: 5 });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  // The app took the whole tour without a restart and stops cleanly.
  expect(app.alive()).toBe(true);
  expect((await app.stop()).code).toBe(0);
});
