import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { posix, resolve } from 'node:path';
import { RequestMethod, type Type } from '@nestjs/common';
import { METHOD_METADATA, MODULE_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import { parse, parseAllDocuments } from 'yaml';
import { configSchema, loadConfig } from '../../src/config';
import { contextModules } from '../../src/contexts';
import { IS_PUBLIC } from '../../src/platform/http/access';
import { AdminController, CommandsController, HealthController } from '../../src/platform/platform.http';

/**
 * docker/compose.yaml and docker/k8s/ checked by parsing them (no Docker engine or cluster runs
 * here): every host the app's URLs name exists, every variable set on the app is a real setting of
 * src/config.ts and the whole environment passes its schema, health checks and dependencies are
 * consistent, images are pinned, no secret is committed, and the probes hit routes the app serves.
 */

/**
 * Settings an instance needs in a multi-instance deployment although the schema has defaults for
 * them: without these each instance would start its own PostgreSQL, Redis or MQTT broker.
 */
const REQUIRED_WHEN_DEPLOYED = ['DATABASE_URL', 'REDIS_URL', 'MQTT_URL'];

const ROOT = resolve(__dirname, '../..');
const DOCKER = resolve(ROOT, 'docker');
const K8S = resolve(DOCKER, 'k8s');
const read = (path: string) => readFileSync(path, 'utf8');

type Dict = Record<string, unknown>;
const CONFIG_KEYS = new Set(Object.keys(configSchema.shape));
/** Keys the schema itself requires (neither optional nor defaulted). */
const SCHEMA_REQUIRED = [...CONFIG_KEYS].filter(
  (k) => !configSchema.shape[k as keyof typeof configSchema.shape].safeParse(undefined).success,
);
const KNOWN_KEYS = CONFIG_KEYS;

/** Stand-ins for the values of docker/.env and the Secret: valid as secrets-check wants them. */
const SECRETS: Record<string, string> = {
  POSTGRES_PASSWORD: 'pg0123456789abcdef0123456789abcdef',
  REDIS_PASSWORD: 'rd0123456789abcdef0123456789abcdef',
  MQTT_PASSWORD: 'mq0123456789abcdef0123456789abcdef',
  ADMIN_EMAIL: 'ops@example.com',
  ADMIN_PASSWORD: 'a long admin passphrase',
  JWT_KEYS: '{"version":1,"keys":[]}',
};

// ---------------------------------------------------------------- compose

/** Compose's interpolation: $$ is a literal $, ${X}, ${X:-d}, ${X-d}, ${X:?e}, ${X?e}, $X. */
function interpolate(text: string, env: Record<string, string>): string {
  return text.replace(
    /\$\$|\$\{([A-Za-z_]\w*)(?:(:?)([-?])([^}]*))?\}|\$([A-Za-z_]\w*)/g,
    (m, name?: string, colon?: string, op?: string, arg?: string, bare?: string) => {
      if (m === '$$') return '$';
      if (bare) return env[bare] ?? '';
      const v = env[name!];
      const missing = colon ? !v : v === undefined;
      if (op === '?' && missing) throw new Error(`required variable ${name} is missing a value: ${arg}`);
      if (op === '-' && missing) return arg ?? '';
      return v ?? '';
    },
  );
}

function interpolateAll(node: unknown, env: Record<string, string>): unknown {
  if (typeof node === 'string') return interpolate(node, env);
  if (Array.isArray(node)) return node.map((n) => interpolateAll(n, env));
  if (node && typeof node === 'object')
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, interpolateAll(v, env)]));
  return node;
}

interface Service {
  image?: string;
  build?: unknown;
  profiles?: string[];
  restart?: string;
  environment?: Record<string, string | number | boolean | null>;
  env_file?: unknown;
  command?: string[];
  ports?: string[];
  volumes?: string[];
  healthcheck?: { test: string[] | string; disable?: boolean };
  depends_on?: Record<string, { condition: string }> | string[];
}
interface Compose {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

const COMPOSE_TEXT = read(resolve(DOCKER, 'compose.yaml'));
/** The file as compose sees it, `<<` merge keys resolved, not interpolated. */
const RAW = parse(COMPOSE_TEXT, { merge: true }) as Compose;
const loadCompose = (env: Record<string, string>) => interpolateAll(RAW, env) as Compose;
/** Interpolated with the secrets filled in; a load error fails the first test below rather than the whole file. */
let loadError: unknown;
const compose = ((): Compose => {
  try {
    return loadCompose(SECRETS);
  } catch (e) {
    loadError = e;
    return RAW;
  }
})();
const services = compose.services;

const deps = (s: Service): Record<string, { condition: string }> =>
  Array.isArray(s.depends_on)
    ? Object.fromEntries(s.depends_on.map((d) => [d, { condition: 'service_started' }]))
    : (s.depends_on ?? {});
const env = (s: Service): Record<string, string> =>
  Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, v === null ? '' : String(v)]));
const mounts = (s: Service) =>
  (s.volumes ?? []).map((v) => {
    const [source, target] = v.split(':') as [string, string];
    return { source, target, named: !/^[./~]/.test(source) };
  });
/** Services `up` starts with these profiles: those without a profile or in one of them, and their dependencies. */
function servicesOf(profiles: string[]): Set<string> {
  const out = new Set<string>();
  const add = (name: string) => {
    if (out.has(name)) return;
    out.add(name);
    Object.keys(deps(services[name]!)).forEach(add);
  };
  for (const [name, s] of Object.entries(services))
    if (!s.profiles?.length || s.profiles.some((p) => profiles.includes(p))) add(name);
  return out;
}
/** App instances: the services built from docker/Dockerfile. */
const apps = Object.entries(services).filter(([, s]) => s.build !== undefined);
const appsOf = (profile: string) => apps.filter(([, s]) => s.profiles?.includes(profile));
const isOneShot = (name: string) =>
  services[name]?.restart === 'no' &&
  Object.values(services).every((s) => {
    const d = deps(s)[name];
    return !d || d.condition === 'service_completed_successfully';
  });

/** The WORKDIR of the Dockerfile's final stage, where the app runs. */
function appWorkdir(): string {
  const dockerfile = read(resolve(DOCKER, 'Dockerfile'));
  const last = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  return /^WORKDIR\s+(\S+)/m.exec(last)![1]!;
}
const DATA_DIR = posix.resolve(appWorkdir(), configSchema.shape.DATA_DIR.parse(undefined));

function hostOf(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port) };
}

describe('docker/compose.yaml', () => {
  it('loads without docker/.env: no required variable, no required env file (so `up kurrentdb` works on a fresh clone)', () => {
    expect(() => loadCompose({})).not.toThrow();
    expect(loadError).toBeUndefined();
    for (const [name, s] of Object.entries(RAW.services))
      expect({ name, env_file: s.env_file }).toEqual({ name, env_file: undefined });
  });

  it('`up kurrentdb` starts KurrentDB alone, published on 127.0.0.1:2113, insecure single node, health at /health/live', () => {
    const k = services.kurrentdb!;
    expect(deps(k)).toEqual({});
    expect(k.ports).toContain('127.0.0.1:2113:2113');
    expect(k.image).toMatch(/^docker\.kurrent\.io\/kurrent-latest\/kurrentdb:(\d+)\.(\d+)/);
    const [, major, minor] = /:(\d+)\.(\d+)/.exec(k.image!)!.map(Number) as [number, number, number];
    expect(major * 100 + minor).toBeGreaterThanOrEqual(2501); // atomic multi-stream appends
    expect(env(k)).toMatchObject({ KURRENTDB_CLUSTER_SIZE: '1', KURRENTDB_INSECURE: 'true' });
    expect(JSON.stringify(k.healthcheck?.test)).toContain('http://127.0.0.1:2113/health/live');
  });

  it('every service has a health check, except one-shot jobs that others wait to complete', () => {
    for (const [name, s] of Object.entries(services)) {
      const checked = s.healthcheck !== undefined && !s.healthcheck.disable && s.healthcheck.test.length > 0;
      expect({ name, checkedOrOneShot: checked || isOneShot(name) }).toEqual({ name, checkedOrOneShot: true });
    }
  });

  it('depends_on names existing services, with conditions they can meet, enabled in the same profiles', () => {
    for (const [name, s] of Object.entries(services))
      for (const [dep, { condition }] of Object.entries(deps(s))) {
        const d = services[dep];
        expect({ name, dep, exists: d !== undefined }).toEqual({ name, dep, exists: true });
        expect(['service_started', 'service_healthy', 'service_completed_successfully']).toContain(condition);
        if (condition === 'service_healthy')
          expect({ name, dep, health: d!.healthcheck !== undefined }).toEqual({ name, dep, health: true });
        if (condition === 'service_completed_successfully')
          expect({ name, dep, oneShot: isOneShot(dep) }).toEqual({ name, dep, oneShot: true });
        if (d!.profiles?.length)
          expect({
            name,
            dep,
            sameProfiles: (s.profiles ?? []).every((p) => d!.profiles!.includes(p)) && (s.profiles ?? []).length > 0,
          }).toEqual({ name, dep, sameProfiles: true });
      }
  });

  it('named volumes are declared (and every declared one used); bind-mounted files exist', () => {
    const declared = Object.keys(compose.volumes ?? {});
    const used = new Set<string>();
    for (const [name, s] of Object.entries(services))
      for (const m of mounts(s)) {
        if (m.named) {
          used.add(m.source);
          expect({ name, volume: m.source, declared: declared.includes(m.source) }).toEqual({
            name,
            volume: m.source,
            declared: true,
          });
        } else
          expect({ name, file: m.source, exists: existsSync(resolve(DOCKER, m.source)) }).toEqual({
            name,
            file: m.source,
            exists: true,
          });
      }
    expect(declared.sort()).toEqual([...used].sort());
  });

  it('images are pinned to a version tag (no latest), the Dockerfile base images too', () => {
    const images = Object.values(services).flatMap((s) => (s.image && !s.build ? [s.image] : []));
    const froms = [...read(resolve(DOCKER, 'Dockerfile')).matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]!);
    expect(images.length).toBeGreaterThanOrEqual(5);
    for (const image of [...images, ...froms])
      expect(image).toMatch(/^[^@]+:(?!latest$)[\w][\w.-]*$|@sha256:[0-9a-f]{64}$/);
  });

  it('the profiles: kurrentdb runs two instances on KurrentDB; postgres-only two on PostgreSQL with no KurrentDB anywhere', () => {
    expect(appsOf('kurrentdb')).toHaveLength(2);
    expect(appsOf('postgres-only')).toHaveLength(2);
    expect(apps).toHaveLength(4);
    expect(servicesOf(['kurrentdb']).has('kurrentdb')).toBe(true);
    const pgOnly = servicesOf(['postgres-only']);
    expect(pgOnly.has('kurrentdb')).toBe(false);
    expect([...pgOnly].filter((n) => services[n]!.build !== undefined).sort()).toEqual(
      appsOf('postgres-only')
        .map(([n]) => n)
        .sort(),
    );
    for (const [name, s] of appsOf('postgres-only')) {
      expect({ name, kurrent: Object.keys(env(s)).filter((k) => k.startsWith('KURRENTDB_')) }).toEqual({
        name,
        kurrent: [],
      });
    }
    for (const [, s] of appsOf('kurrentdb')) expect(env(s).KURRENTDB_URL).toBe('kurrentdb://kurrentdb:2113?tls=false');
    // The two stacks keep their data apart: a read model fed by one store must never see the other's positions.
    const dbOf = (p: string) => new Set(appsOf(p).map(([, s]) => new URL(env(s).DATABASE_URL!).pathname));
    const prefixOf = (p: string) => new Set(appsOf(p).map(([, s]) => env(s).QUEUE_PREFIX));
    expect(dbOf('kurrentdb').size).toBe(1);
    expect([...dbOf('kurrentdb')]).not.toEqual([...dbOf('postgres-only')]);
    expect([...prefixOf('kurrentdb')]).not.toEqual([...prefixOf('postgres-only')]);
    // postgres-init.sql creates the postgres-only database.
    const pgDb = [...dbOf('postgres-only')][0]!.slice(1);
    expect(read(resolve(DOCKER, 'postgres-init.sql'))).toMatch(new RegExp(`CREATE DATABASE ${pgDb};`));
    expect(
      services.postgres!.volumes!.some((v) => v.startsWith('./postgres-init.sql:/docker-entrypoint-initdb.d/')),
    ).toBe(true);
  });

  describe.each(apps.map(([name]) => name))('app instance %s', (name) => {
    const s = services[name]!;
    const e = env(s);

    it('sets only real settings of src/config.ts', () => {
      expect(Object.keys(e).filter((k) => !KNOWN_KEYS.has(k))).toEqual([]);
    });

    it('passes the config schema with the secrets filled in, and sets what a deployment needs', () => {
      expect(() => loadConfig(e)).not.toThrow();
      for (const k of [...SCHEMA_REQUIRED, ...REQUIRED_WHEN_DEPLOYED])
        expect({ k, set: !!e[k] }).toEqual({ k, set: true });
    });

    it('names only hosts that are services it waits for, on the ports they listen on', () => {
      const listens: Record<string, number> = {
        postgres: 5432,
        redis: 6379,
        mosquitto: mosquittoListener(),
        kurrentdb: 2113,
      };
      for (const key of ['DATABASE_URL', 'REDIS_URL', 'MQTT_URL', 'KURRENTDB_URL']) {
        if (!e[key]) continue;
        const { host, port } = hostOf(e[key]);
        expect({ key, host, dependency: deps(s)[host]?.condition }).toEqual({
          key,
          host,
          dependency: 'service_healthy',
        });
        expect({ key, port }).toEqual({ key, port: listens[host] });
      }
    });

    it('takes every secret from docker/.env (an interpolation), none written in the file', () => {
      const raw = RAW.services[name]!.environment ?? {};
      for (const k of ['MQTT_PASSWORD', 'ADMIN_PASSWORD', 'JWT_KEYS', 'JWT_HS256_SECRET'])
        if (k in raw) expect({ k, v: raw[k] }).toEqual({ k, v: `\${${k}:-}` });
      for (const k of ['DATABASE_URL', 'REDIS_URL'])
        expect(new URL(String(raw[k]).replace(/\$\{(\w+):-\}/g, 'X$1')).password).toMatch(/^X[A-Z_]+PASSWORD$/);
    });

    it('authenticates at Mosquitto as the ACL user that may read the readings', () => {
      expect(e.MQTT_USERNAME).toBe(aclUser());
      expect(e.MQTT_PASSWORD).toBe(SECRETS.MQTT_PASSWORD);
    });
  });

  it('instances of one profile have distinct, stable MQTT client ids and share the same signing keys', () => {
    for (const profile of ['kurrentdb', 'postgres-only']) {
      const instances = appsOf(profile).map(([, s]) => s);
      const ids = instances.map((s) => env(s).MQTT_CLIENT_ID);
      expect(new Set(ids).size).toBe(instances.length);
      for (const id of ids) expect(id).toMatch(/^[\w.:-]{1,128}$/);
      // JWT_KEYS from the same place, and without it one volume at DATA_DIR/secrets shared by all.
      expect(new Set(instances.map((s) => env(s).JWT_KEYS)).size).toBe(1);
      const keyVolumes = instances.map(
        (s) => mounts(s).find((m) => m.target === `${DATA_DIR}/secrets` && m.named)?.source,
      );
      expect(keyVolumes.every((v) => v !== undefined && v === keyVolumes[0])).toBe(true);
    }
  });

  describe('secrets-check', () => {
    const script = () => {
      const c = services['secrets-check']!.command!;
      expect(c.slice(0, 2)).toEqual(['sh', '-c']);
      return c[2]!;
    };
    const run = (vars: Record<string, string>) =>
      spawnSync('sh', ['-c', script()], { env: { PATH: process.env.PATH, ...vars }, encoding: 'utf8' });

    it('every service but KurrentDB waits for it', () => {
      for (const [name, s] of Object.entries(services))
        if (!['secrets-check', 'kurrentdb'].includes(name))
          expect({ name, waits: deps(s)['secrets-check']?.condition }).toEqual({
            name,
            waits: 'service_completed_successfully',
          });
    });

    it('fails naming each missing, short or URL-unsafe secret; passes with good ones', () => {
      const none = run({});
      expect(none.status).toBe(1);
      for (const v of ['POSTGRES_PASSWORD', 'REDIS_PASSWORD', 'MQTT_PASSWORD'])
        expect(none.stdout).toContain(`${v}: is not set`);
      const bad = run({ ...SECRETS, REDIS_PASSWORD: 'short', MQTT_PASSWORD: 'has/slash@and:colon-0123456789' });
      expect(bad.status).toBe(1);
      expect(bad.stdout).toContain('REDIS_PASSWORD: must be at least 16 characters');
      expect(bad.stdout).toContain('MQTT_PASSWORD: letters, digits and . _ ~ - only');
      expect(bad.stdout).not.toContain('POSTGRES_PASSWORD');
      const good = run(SECRETS);
      expect({ status: good.status, out: good.stdout }).toEqual({ status: 0, out: '' });
    });
  });
});

// ---------------------------------------------------------------- mosquitto

const MOSQUITTO_CONF = read(resolve(DOCKER, 'mosquitto.conf'));
const MOSQUITTO_ACL = read(resolve(DOCKER, 'mosquitto.acl'));
const confValues = (directive: string) =>
  [...MOSQUITTO_CONF.matchAll(new RegExp(`^${directive}\\s+(.+)$`, 'gm'))].map((m) => m[1]!.trim());
function mosquittoListener(): number {
  const l = confValues('listener');
  expect(l).toHaveLength(1);
  return Number(l[0]!.split(/\s+/)[0]);
}
/** The one ACL user (not a pattern) allowed to read the shared subscription: the app's account. */
function aclUser(): string {
  const users = [...MOSQUITTO_ACL.matchAll(/^user\s+(\S+)$/gm)].map((m) => m[1]!);
  expect(users).toHaveLength(1);
  expect(MOSQUITTO_ACL).toMatch(/^topic read \$share\/ops-platform\/devices\/\+\/readings$/m);
  return users[0]!;
}
/** Paths the broker reads or writes: password and ACL files (must exist at start), the persistence directory. */
const CONF_FILES = () => ({
  files: [...confValues('password_file'), ...confValues('acl_file')],
  dirs: confValues('persistence_location'),
});

/** Checks that each file mosquitto.conf names is provided: bind-mounted from the repo, or written by the start script. */
function expectMosquittoFilesProvided(
  where: string,
  mountList: { target: string; fromRepo?: string; volume: boolean }[],
  startScript: string,
) {
  const { files, dirs } = CONF_FILES();
  expect(files.length).toBe(2);
  for (const file of files) {
    const exact = mountList.find((m) => m.target === file);
    if (exact?.fromRepo) {
      expect({ where, file, exists: existsSync(exact.fromRepo) }).toEqual({ where, file, exists: true });
      continue;
    }
    const inVolume = mountList.some((m) => m.volume && file.startsWith(`${m.target}/`));
    expect({ where, file, inVolume, written: startScript.includes(file) }).toEqual({
      where,
      file,
      inVolume: true,
      written: true,
    });
  }
  for (const dir of dirs)
    expect({ where, dir, inVolume: mountList.some((m) => m.volume && posix.resolve(dir) === m.target) }).toEqual({
      where,
      dir,
      inVolume: true,
    });
  // The broker runs the shipped conf.
  expect(startScript).toMatch(/exec mosquitto -c \/mosquitto\/config\/mosquitto\.conf\s*$/);
  expect(
    mountList.some((m) => m.target === '/mosquitto/config/mosquitto.conf' && m.fromRepo?.endsWith('mosquitto.conf')),
  ).toBe(true);
}

describe('docker/mosquitto.conf and its ACL', () => {
  it('requires authentication and reads the ACL the app and devices are checked against', () => {
    expect(confValues('allow_anonymous')).toEqual(['false']);
    expect(MOSQUITTO_ACL).toMatch(/^pattern write devices\/%u\/readings$/m);
    expect(aclUser()).toBe('platform');
  });

  it('compose: every file the conf names is mounted from the repo or written at start into a volume', () => {
    const m = services.mosquitto!;
    const list = mounts(m).map((x) => ({
      target: x.target,
      volume: x.named,
      ...(x.named ? {} : { fromRepo: resolve(DOCKER, x.source) }),
    }));
    expectMosquittoFilesProvided('compose', list, m.command![2]!);
  });
});

// ---------------------------------------------------------------- kubernetes

interface K8sObject {
  kind: string;
  metadata: { name: string };
  spec?: Dict & {
    serviceName?: string;
    replicas?: number;
    ports?: { port: number }[];
    clusterIP?: string;
    volumeClaimTemplates?: { metadata: { name: string } }[];
    template?: { spec: PodSpec };
  };
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  resources?: string[];
}
interface Probe {
  httpGet?: { path: string; port: number };
  exec?: { command: string[] };
  tcpSocket?: { port: number };
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    secretKeyRef?: { name: string; key: string; optional?: boolean };
    configMapKeyRef?: { name: string; key: string };
    fieldRef?: { fieldPath: string };
  };
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  env?: EnvVar[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  volumeMounts?: { name: string; mountPath: string; subPath?: string }[];
}
interface PodSpec {
  containers: Container[];
  volumes?: { name: string; configMap?: { name: string }; emptyDir?: unknown }[];
}

const K8S_FILES = readdirSync(K8S).filter((f) => f.endsWith('.yaml'));
const K8S_OBJECTS: K8sObject[] = K8S_FILES.filter((f) => f !== 'kustomization.yaml').flatMap((f) =>
  parseAllDocuments(read(resolve(K8S, f))).map((d) => {
    if (d.errors.length) throw new Error(`${f}: ${d.errors[0]!.message}`);
    return d.toJS() as K8sObject;
  }),
);
const byKind = (kind: string) => K8S_OBJECTS.filter((o) => o.kind === kind);
const named = (kind: string, name: string) => K8S_OBJECTS.find((o) => o.kind === kind && o.metadata.name === name);
const workloads = K8S_OBJECTS.filter((o) => ['Deployment', 'StatefulSet'].includes(o.kind));
const containerOf = (w: K8sObject) => w.spec!.template!.spec.containers[0]!;
const APP = workloads.find((w) => containerOf(w).image.startsWith('ops-platform'))!;

/** The app container's environment as Kubernetes builds it: ConfigMaps, Secret stand-ins, the pod name, $(VAR) expanded. */
function k8sAppEnv(podName: string): { env: Record<string, string>; expansionOnly: Set<string> } {
  const c = containerOf(APP);
  const out: Record<string, string> = {};
  for (const f of c.envFrom ?? []) {
    expect(f.secretRef).toBeUndefined(); // secrets one by one, so each is named here
    Object.assign(out, named('ConfigMap', f.configMapRef!.name)!.data);
  }
  const referenced = new Set<string>();
  for (const v of c.env ?? []) {
    if (v.value !== undefined)
      out[v.name] = v.value.replace(/\$\((\w+)\)/g, (_, n: string) => {
        referenced.add(n);
        expect({ n, definedBefore: n in out }).toEqual({ n, definedBefore: true });
        return out[n]!;
      });
    else if (v.valueFrom?.secretKeyRef) {
      expect(v.valueFrom.secretKeyRef.name).toBe('platform-secrets');
      out[v.name] = SECRETS[v.valueFrom.secretKeyRef.key]!;
    } else if (v.valueFrom?.configMapKeyRef)
      out[v.name] = named('ConfigMap', v.valueFrom.configMapKeyRef.name)!.data![v.valueFrom.configMapKeyRef.key]!;
    else if (v.valueFrom?.fieldRef?.fieldPath === 'metadata.name') out[v.name] = podName;
    else throw new Error(`env ${v.name}: unsupported source`);
  }
  // Variables set only to be expanded into others ($(POSTGRES_PASSWORD) in DATABASE_URL) are not settings.
  const expansionOnly = new Set([...referenced].filter((n) => !KNOWN_KEYS.has(n)));
  return { env: out, expansionOnly };
}

/** The GET routes the app serves without a token: path -> public. */
function publicGetRoutes(): Set<string> {
  const controllers: Type[] = [HealthController, AdminController, CommandsController];
  for (const m of contextModules)
    controllers.push(...((Reflect.getMetadata(MODULE_METADATA.CONTROLLERS, m) as Type[]) ?? []));
  const routes = new Set<string>();
  for (const ctl of controllers) {
    const base = String(Reflect.getMetadata(PATH_METADATA, ctl) ?? '');
    for (const key of Object.getOwnPropertyNames(ctl.prototype)) {
      const handler = (ctl.prototype as Record<string, unknown>)[key];
      if (typeof handler !== 'function' || key === 'constructor') continue;
      const path = Reflect.getMetadata(PATH_METADATA, handler) as string | undefined;
      if (path === undefined || Reflect.getMetadata(METHOD_METADATA, handler) !== RequestMethod.GET) continue;
      const isPublic = Reflect.getMetadata(IS_PUBLIC, handler) ?? Reflect.getMetadata(IS_PUBLIC, ctl);
      if (isPublic) routes.add(posix.join('/', base, path).replace(/\/$/, '') || '/');
    }
  }
  return routes;
}

describe('docker/k8s', () => {
  it('kustomization.yaml lists every manifest', () => {
    const k = parse(read(resolve(K8S, 'kustomization.yaml'))) as K8sObject;
    expect([...k.resources!].sort()).toEqual(K8S_FILES.filter((f) => f !== 'kustomization.yaml').sort());
  });

  it('KurrentDB and PostgreSQL (and Redis, Mosquitto) are StatefulSets with a governing Service and volume claim templates', () => {
    for (const name of ['kurrentdb', 'postgres', 'redis', 'mosquitto']) {
      const s = named('StatefulSet', name);
      expect({ name, kind: s?.kind }).toEqual({ name, kind: 'StatefulSet' });
      expect(named('Service', s!.spec!.serviceName!)).toBeDefined();
      expect(s!.spec!.volumeClaimTemplates!.length).toBeGreaterThan(0);
      const claims = s!.spec!.volumeClaimTemplates!.map((v) => v.metadata.name);
      const volumes = (s!.spec!.template!.spec.volumes ?? []).map((v) => v.name);
      for (const m of containerOf(s!).volumeMounts ?? [])
        expect({ name, mount: m.name, declared: [...claims, ...volumes].includes(m.name) }).toEqual({
          name,
          mount: m.name,
          declared: true,
        });
    }
    expect(containerOf(named('StatefulSet', 'kurrentdb')!).image).toBe(services.kurrentdb!.image);
  });

  it('the app runs two replicas, ready on /health and alive on a public GET route that needs no database', () => {
    expect(APP.spec!.replicas).toBe(2);
    const c = containerOf(APP);
    const routes = publicGetRoutes();
    expect(routes.has('/health')).toBe(true);
    expect(c.readinessProbe?.httpGet?.path).toBe('/health');
    for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
      expect(probe?.httpGet?.port).toBe(3000);
      expect(routes.has(probe!.httpGet!.path)).toBe(true);
    }
    expect(c.livenessProbe!.httpGet!.path).not.toBe('/health'); // a database outage must not restart every pod
  });

  it('every container has readiness and liveness probes; every image is pinned', () => {
    for (const w of workloads)
      for (const c of w.spec!.template!.spec.containers) {
        expect({ w: w.metadata.name, ready: !!c.readinessProbe, live: !!c.livenessProbe }).toEqual({
          w: w.metadata.name,
          ready: true,
          live: true,
        });
        expect(c.image).toMatch(/^[^@]+:(?!latest$)[\w][\w.-]*$|@sha256:[0-9a-f]{64}$/);
      }
  });

  it('the app sets only real settings, passes the schema, and names Services on their ports', () => {
    for (const pod of ['platform-0', 'platform-1']) {
      const { env: e, expansionOnly } = k8sAppEnv(pod);
      const settings = Object.fromEntries(Object.entries(e).filter(([k]) => !expansionOnly.has(k)));
      expect(Object.keys(settings).filter((k) => !KNOWN_KEYS.has(k))).toEqual([]);
      expect(() => loadConfig(settings)).not.toThrow();
      for (const k of [
        ...SCHEMA_REQUIRED,
        ...REQUIRED_WHEN_DEPLOYED,
        'KURRENTDB_URL',
        'JWT_KEYS',
        'MQTT_USERNAME',
        'MQTT_PASSWORD',
      ])
        expect({ k, set: !!settings[k] }).toEqual({ k, set: true });
      expect(settings.MQTT_CLIENT_ID).toBe(pod); // stable per instance: a StatefulSet pod name
      expect(settings.MQTT_USERNAME).toBe(aclUser());
      for (const key of ['DATABASE_URL', 'REDIS_URL', 'MQTT_URL', 'KURRENTDB_URL']) {
        const { host, port } = hostOf(settings[key]!);
        const svc = named('Service', host);
        expect({ key, host, service: svc?.kind }).toEqual({ key, host, service: 'Service' });
        expect({ key, port: svc!.spec!.ports!.map((p) => p.port) }).toEqual({ key, port: [port] });
      }
    }
    expect(APP.kind).toBe('StatefulSet'); // stable MQTT client ids (see platform.yaml)
  });

  it('commits no secret: no Secret object with values, secrets only through secretKeyRef', () => {
    for (const s of byKind('Secret')) expect({ ...s.data, ...s.stringData }).toEqual({});
    for (const w of workloads)
      for (const c of w.spec!.template!.spec.containers)
        for (const v of c.env ?? [])
          if (/PASSWORD|SECRET|JWT_KEYS/.test(v.name))
            expect({ v: v.name, ref: v.valueFrom?.secretKeyRef?.name }).toEqual({ v: v.name, ref: 'platform-secrets' });
    for (const cm of byKind('ConfigMap'))
      for (const k of Object.keys(cm.data ?? {})) expect(k).not.toMatch(/PASSWORD|SECRET|JWT_KEYS/);
  });

  it('Mosquitto runs docker/mosquitto.conf and the ACL verbatim, every file they name provided', () => {
    const cm = named('ConfigMap', 'mosquitto-config')!;
    expect(cm.data!['mosquitto.conf']).toBe(MOSQUITTO_CONF);
    expect(cm.data!['mosquitto.acl']).toBe(MOSQUITTO_ACL);
    const s = named('StatefulSet', 'mosquitto')!;
    const c = containerOf(s);
    const claims = s.spec!.volumeClaimTemplates!.map((v) => v.metadata.name);
    const list = (c.volumeMounts ?? []).map((m) => {
      const vol = s.spec!.template!.spec.volumes?.find((v) => v.name === m.name);
      const fromConfigMap = vol?.configMap && m.subPath ? resolve(DOCKER, m.subPath) : undefined;
      if (fromConfigMap) expect(cm.data![m.subPath!]).toBeDefined();
      return {
        target: m.mountPath,
        volume: claims.includes(m.name),
        ...(fromConfigMap ? { fromRepo: fromConfigMap } : {}),
      };
    });
    expectMosquittoFilesProvided('k8s', list, c.command![2]!);
  });

  it('start scripts equal those of docker/compose.yaml (Redis, Mosquitto)', () => {
    for (const name of ['redis', 'mosquitto'])
      expect(containerOf(named('StatefulSet', name)!).command).toEqual(services[name]!.command);
  });
});
