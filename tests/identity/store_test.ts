import assert from "node:assert/strict";
import { join } from "node:path";
import { encodeIdentityFile, fingerprint, newIdentity } from "../../lib/identity/identity.ts";
import { STALE_TMP_MS, writeFileAtomic } from "../../lib/identity/_atomic.ts";
import {
  configDir,
  IDENTITY_FILE,
  KNOWN_PEERS_BACKUP_SUFFIX,
  KNOWN_PEERS_FILE,
  KnownPeersFile,
  loadOrCreateIdentity,
  MAX_KNOWN_PEERS_BYTES,
} from "../../lib/identity/store.ts";

const unix = Deno.build.os !== "windows";

/** Run `fn` with a fresh temp dir that is removed afterwards, even on failure. */
async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "p2pchat_identity_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const modeOf = async (path: string) => (await Deno.stat(path)).mode! & 0o777;

// ---- configDir ----

const dirCases: {
  name: string;
  os: typeof Deno.build.os;
  env: Record<string, string>;
  want: string | RegExp;
}[] = [
  {
    name: "linux uses XDG_CONFIG_HOME",
    os: "linux",
    env: { XDG_CONFIG_HOME: "/xdg", HOME: "/home/ann" },
    want: "/xdg/p2pchat",
  },
  {
    name: "linux falls back to HOME",
    os: "linux",
    env: { HOME: "/home/ann" },
    want: "/home/ann/.config/p2pchat",
  },
  {
    name: "linux treats an empty XDG_CONFIG_HOME as unset",
    os: "linux",
    env: { XDG_CONFIG_HOME: "", HOME: "/home/ann" },
    want: "/home/ann/.config/p2pchat",
  },
  {
    name: "linux ignores a relative XDG_CONFIG_HOME",
    os: "linux",
    env: { XDG_CONFIG_HOME: "cfg", HOME: "/home/ann" },
    want: "/home/ann/.config/p2pchat",
  },
  {
    name: "linux with XDG only",
    os: "linux",
    env: { XDG_CONFIG_HOME: "/xdg/" },
    want: "/xdg/p2pchat",
  },
  {
    name: "linux with nothing set",
    os: "linux",
    env: {},
    want: /^Cannot find a config directory: set XDG_CONFIG_HOME or HOME$/,
  },
  {
    name: "linux with an empty HOME",
    os: "linux",
    env: { HOME: "" },
    want: /^Cannot find a config directory: set XDG_CONFIG_HOME or HOME$/,
  },
  {
    name: "freebsd is like linux",
    os: "freebsd",
    env: { HOME: "/usr/home/ann" },
    want: "/usr/home/ann/.config/p2pchat",
  },
  {
    name: "macOS uses Application Support",
    os: "darwin",
    env: { HOME: "/Users/ann", XDG_CONFIG_HOME: "/xdg" },
    want: "/Users/ann/Library/Application Support/p2pchat",
  },
  {
    name: "macOS with nothing set",
    os: "darwin",
    env: { XDG_CONFIG_HOME: "/xdg" },
    want: /set HOME/,
  },
  {
    name: "windows uses APPDATA",
    os: "windows",
    env: { APPDATA: "C:\\Users\\ann\\AppData\\Roaming", HOME: "/home/ann" },
    want: "C:\\Users\\ann\\AppData\\Roaming\\p2pchat",
  },
  {
    name: "windows with nothing set",
    os: "windows",
    env: { HOME: "C:\\Users\\ann" },
    want: /set APPDATA/,
  },
];
for (const c of dirCases) {
  Deno.test(`configDir: ${c.name}`, () => {
    const env = (name: string) => c.env[name];
    if (typeof c.want === "string") assert.equal(configDir(env, c.os), c.want);
    else assert.throws(() => configDir(env, c.os), { message: c.want });
  });
}

// ---- identity file ----

Deno.test("store: creates an identity, then reloads the same one", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "cfg", "p2pchat", IDENTITY_FILE);
    const first = await loadOrCreateIdentity(path);
    assert.equal(first.created, true);
    const second = await loadOrCreateIdentity(path);
    assert.equal(second.created, false);
    assert.deepEqual(second.identity, first.identity);
    assert.equal(await Deno.readTextFile(path), encodeIdentityFile(first.identity));
    assert.deepEqual([...Deno.readDirSync(join(dir, "cfg", "p2pchat"))].map((e) => e.name), [
      IDENTITY_FILE,
    ], "no temp files left behind");
  });
});

Deno.test({
  name: "store: the identity file is 0600 and new directories 0700",
  ignore: !unix,
  fn: () =>
    withTempDir(async (dir) => {
      const path = join(dir, "a", "b", IDENTITY_FILE);
      await loadOrCreateIdentity(path);
      assert.equal(await modeOf(path), 0o600);
      assert.equal(await modeOf(join(dir, "a", "b")), 0o700);
      assert.equal(await modeOf(join(dir, "a")), 0o700);
    }),
});

Deno.test({
  name: "store: an identity file readable by others is refused",
  ignore: !unix,
  fn: () =>
    withTempDir(async (dir) => {
      const path = join(dir, IDENTITY_FILE);
      await loadOrCreateIdentity(path);
      for (const mode of [0o644, 0o640, 0o604]) {
        await Deno.chmod(path, mode);
        await assert.rejects(
          loadOrCreateIdentity(path),
          new Error(`Cannot use identity ${path}: it is readable by others (chmod 600 it)`),
        );
      }
      await Deno.chmod(path, 0o400);
      assert.equal((await loadOrCreateIdentity(path)).created, false, "read-only for me is fine");
    }),
});

Deno.test("store: a corrupt or mismatched identity file is an error, never replaced", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, IDENTITY_FILE);
    const cases: [string, RegExp][] = [
      ["{not json", /: not valid JSON$/],
      [
        encodeIdentityFile(newIdentity()).replace(
          /"public":"[0-9a-f]+"/,
          `"public":"${"ab".repeat(32)}"`,
        ),
        /: public does not match ed25519_secret$/,
      ],
    ];
    for (const [text, reason] of cases) {
      await Deno.writeTextFile(path, text, { mode: 0o600 });
      await assert.rejects(loadOrCreateIdentity(path), (e: Error) => {
        assert.ok(e.message.startsWith(`Cannot read identity ${path}: `), e.message);
        assert.match(e.message, reason);
        return true;
      });
      assert.equal(await Deno.readTextFile(path), text, "left untouched");
    }
  });
});

Deno.test("store: a directory where the identity should be is an error", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, IDENTITY_FILE);
    await Deno.mkdir(path);
    await assert.rejects(
      loadOrCreateIdentity(path),
      /^Error: Cannot read identity .*: not a regular file$/,
    );
  });
});

Deno.test("store: concurrent first runs agree on one identity", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, IDENTITY_FILE);
    const results = await Promise.all([1, 2, 3, 4].map(() => loadOrCreateIdentity(path)));
    assert.equal(results.filter((r) => r.created).length, 1);
    const fps = new Set(results.map((r) => fingerprint(r.identity.edPublic)));
    assert.equal(fps.size, 1);
    const onDisk = await loadOrCreateIdentity(path);
    assert.ok(fps.has(fingerprint(onDisk.identity.edPublic)));
  });
});

Deno.test("atomic write: no-clobber mode leaves an existing file alone", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "f");
    assert.equal(await writeFileAtomic(path, "one", { mode: 0o600, overwrite: false }), true);
    assert.equal(await writeFileAtomic(path, "two", { mode: 0o600, overwrite: false }), false);
    assert.equal(await Deno.readTextFile(path), "one");
    assert.equal(await writeFileAtomic(path, "three", { mode: 0o600, overwrite: true }), true);
    assert.equal(await Deno.readTextFile(path), "three");
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["f"]);
  });
});

Deno.test("atomic write: temp files a killed write left behind are swept, fresh ones kept", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "f");
    const old = join(dir, ".f.0123456789ab.tmp");
    const fresh = join(dir, ".f.ba9876543210.tmp");
    const other = join(dir, ".g.0123456789ab.tmp"); // another file's: not ours to judge
    for (const p of [old, fresh, other]) await Deno.writeTextFile(p, "secret");
    const past = new Date(Date.now() - STALE_TMP_MS - 5000);
    await Deno.utime(old, past, past);
    await Deno.utime(other, past, past);
    assert.equal(await writeFileAtomic(path, "one", { mode: 0o600, overwrite: true }), true);
    const left = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(left, [".f.ba9876543210.tmp", ".g.0123456789ab.tmp", "f"]);
  });
});

// ---- known peers ----

const BOB = "example.org:7777/lobby/bob";
const FP1 = "3f1c-09ab-77d2-e410";
const FP2 = "0000-1111-2222-3333";

Deno.test("known peers: a missing file is empty and pins persist across reopen", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "new", KNOWN_PEERS_FILE);
    const known = await KnownPeersFile.open(path);
    assert.equal(known.check(BOB, FP1), "new");
    await known.pin(BOB, FP1);
    assert.equal(known.check(BOB, FP1), "match");
    const reopened = await KnownPeersFile.open(path);
    assert.equal(reopened.check(BOB, FP1), "match");
    assert.equal(reopened.check(BOB, FP2), "changed");
    assert.equal(reopened.get(BOB), FP1);
    await reopened.pin(BOB, FP2);
    assert.equal((await KnownPeersFile.open(path)).check(BOB, FP2), "match");
    if (unix) {
      assert.equal(await modeOf(path), 0o600);
      assert.equal(await modeOf(join(dir, "new")), 0o700);
    }
  });
});

Deno.test("known peers: pins made without waiting are all saved, in order", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, KNOWN_PEERS_FILE);
    const known = await KnownPeersFile.open(path);
    const saves = [known.pin("a", FP1), known.pin("b", FP1), known.pin("a", FP2)];
    assert.equal(known.check("a", FP2), "match", "visible before the save finishes");
    await Promise.all(saves);
    const reopened = await KnownPeersFile.open(path);
    assert.equal(reopened.check("a", FP2), "match");
    assert.equal(reopened.check("b", FP1), "match");
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), [KNOWN_PEERS_FILE]);
  });
});

Deno.test("known peers: two handles on one file keep each other's pins", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, KNOWN_PEERS_FILE);
    const one = await KnownPeersFile.open(path);
    const two = await KnownPeersFile.open(path);
    await one.pin("a", FP1);
    await two.pin("b", FP2);
    const reopened = await KnownPeersFile.open(path);
    assert.equal(reopened.check("a", FP1), "match");
    assert.equal(reopened.check("b", FP2), "match");
    assert.equal(two.check("a", FP1), "match", "a save picks up what is on disk");
  });
});

Deno.test("known peers: a corrupt file is an error and a bad pin is refused", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, KNOWN_PEERS_FILE);
    await Deno.writeTextFile(path, `{"version":1,"peers":`);
    await assert.rejects(
      KnownPeersFile.open(path),
      new Error(`Cannot read known peers ${path}: not valid JSON`),
    );
    await Deno.remove(path);
    const known = await KnownPeersFile.open(path);
    await assert.rejects(known.pin(BOB, "not a fingerprint"), /Cannot pin/);
    assert.equal(known.check(BOB, FP1), "new");
    await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
  });
});

// ---- hardening: owners, modes, the config directory, backups, durability ----

/** Root can make files owned by someone else; others cannot, and skip those tests. */
const root = unix && Deno.uid() === 0;
const OTHER_UID = 54321;

/** Runs `fn` with XDG_CONFIG_HOME pointing into a temp dir (so `configDir()` is in it). */
function withConfigHome(fn: (dir: string, cfg: string) => Promise<void>): Promise<void> {
  return withTempDir(async (dir) => {
    const old = Deno.env.get("XDG_CONFIG_HOME");
    Deno.env.set("XDG_CONFIG_HOME", join(dir, "xdg"));
    try {
      await fn(dir, configDir());
    } finally {
      if (old === undefined) Deno.env.delete("XDG_CONFIG_HOME");
      else Deno.env.set("XDG_CONFIG_HOME", old);
    }
  });
}

const identityModes: [number, string][] = [
  [0o620, "writable"],
  [0o602, "writable"],
  [0o660, "readable and writable"],
  [0o666, "readable and writable"],
  [0o610, "accessible"],
  [0o701, "accessible"],
];
Deno.test({
  name: "store: an identity file others can write or execute is refused",
  ignore: !unix,
  fn: () =>
    withTempDir(async (dir) => {
      const path = join(dir, IDENTITY_FILE);
      await loadOrCreateIdentity(path);
      for (const [mode, how] of identityModes) {
        await Deno.chmod(path, mode);
        await assert.rejects(
          loadOrCreateIdentity(path),
          new Error(`Cannot use identity ${path}: it is ${how} by others (chmod 600 it)`),
          mode.toString(8),
        );
      }
      await Deno.chmod(path, 0o600);
      assert.equal((await loadOrCreateIdentity(path)).created, false);
    }),
});

Deno.test({
  name: "store: an identity file owned by another user is refused",
  ignore: !root,
  fn: () =>
    withTempDir(async (dir) => {
      const path = join(dir, IDENTITY_FILE);
      await loadOrCreateIdentity(path);
      await Deno.chown(path, OTHER_UID, null);
      await assert.rejects(
        loadOrCreateIdentity(path),
        new Error(
          `Cannot use identity ${path}: it is owned by another user (uid ${OTHER_UID}, we are 0)`,
        ),
      );
    }),
});

Deno.test({
  name: "store: the config directory is made private; other directories are left alone",
  ignore: Deno.build.os !== "linux" && Deno.build.os !== "freebsd",
  fn: () =>
    withConfigHome(async (dir, cfg) => {
      await Deno.mkdir(cfg, { recursive: true });
      const cases: [string, () => Promise<unknown>][] = [
        ["loading the identity", () => loadOrCreateIdentity(join(cfg, IDENTITY_FILE))],
        ["opening known peers", () => KnownPeersFile.open(join(cfg, KNOWN_PEERS_FILE))],
      ];
      for (const [name, open] of cases) {
        await Deno.chmod(cfg, 0o755);
        await open();
        assert.equal(await modeOf(cfg), 0o700, name);
      }
      // A directory that only holds an --identity file is not ours to change.
      const other = join(dir, "elsewhere");
      await Deno.mkdir(other);
      await Deno.chmod(other, 0o755);
      await loadOrCreateIdentity(join(other, IDENTITY_FILE));
      assert.equal(await modeOf(other), 0o755);
      if (root) {
        await Deno.chown(cfg, OTHER_UID, null);
        await Deno.chmod(cfg, 0o755);
        await loadOrCreateIdentity(join(cfg, IDENTITY_FILE));
        assert.equal(await modeOf(cfg), 0o755, "not ours: left alone");
      }
    }),
});

Deno.test({
  name: "known peers: a file others can write, or another user owns, is refused",
  ignore: !unix,
  fn: () =>
    withTempDir(async (dir) => {
      const path = join(dir, KNOWN_PEERS_FILE);
      await (await KnownPeersFile.open(path)).pin(BOB, FP1);
      for (const mode of [0o620, 0o602, 0o666]) {
        await Deno.chmod(path, mode);
        await assert.rejects(
          KnownPeersFile.open(path),
          (e: Error) => {
            assert.match(e.message, /writable by others \(chmod 600 it\)$/);
            return e.message.startsWith(`Cannot use known peers ${path}: it is `);
          },
          mode.toString(8),
        );
      }
      await Deno.chmod(path, 0o644);
      assert.equal((await KnownPeersFile.open(path)).check(BOB, FP1), "match", "readable is fine");
      if (root) {
        await Deno.chown(path, OTHER_UID, null);
        await assert.rejects(KnownPeersFile.open(path), /owned by another user/);
      }
    }),
});

Deno.test("known peers: a directory or an oversized file is an error", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, KNOWN_PEERS_FILE);
    await Deno.mkdir(path);
    await assert.rejects(
      KnownPeersFile.open(path),
      new Error(`Cannot read known peers ${path}: not a regular file`),
    );
    await Deno.remove(path);
    const big = `{"version":1,"peers":{},"pad":"${"x".repeat(MAX_KNOWN_PEERS_BYTES)}"}`;
    await Deno.writeTextFile(path, big, { mode: 0o600 });
    await assert.rejects(KnownPeersFile.open(path), /is more than the 4194304 allowed$/);
  });
});

Deno.test("known peers: saves keep the previous table, and a corrupt file names it", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, KNOWN_PEERS_FILE);
    const bak = path + KNOWN_PEERS_BACKUP_SUFFIX;
    const known = await KnownPeersFile.open(path);
    await known.pin("a", FP1);
    await assert.rejects(Deno.stat(bak), Deno.errors.NotFound, "nothing to back up yet");
    const before = await Deno.readTextFile(path);
    await known.pin("b", FP2);
    assert.equal(await Deno.readTextFile(bak), before, "the table before the last save");
    if (unix) assert.equal(await modeOf(bak), 0o600);
    // The file is damaged (a bad disk, a careless edit): an error that says where the backup is.
    await Deno.writeTextFile(path, `{"version":1,"peers":{"a":`);
    await assert.rejects(
      KnownPeersFile.open(path),
      new Error(
        `Cannot read known peers ${path}: not valid JSON (the table before the last save is in ${bak})`,
      ),
    );
    // A pin made meanwhile is refused too, and neither file is replaced.
    await assert.rejects(known.pin("c", FP1), /Cannot read known peers/);
    assert.equal(await Deno.readTextFile(path), `{"version":1,"peers":{"a":`);
    assert.equal(await Deno.readTextFile(bak), before);
  });
});

Deno.test({
  name: "atomic write: the directory is flushed after the file is moved into place",
  ignore: !unix,
  fn: () =>
    withTempDir(async (dir) => {
      const path = join(dir, "f");
      const synced: { dir: string; fileThere: boolean }[] = [];
      const deno = Deno as { open: typeof Deno.open };
      const open = deno.open;
      deno.open = async (p, o) => {
        const f = await open(p, o);
        if (String(p) === dir) {
          const sync = f.sync.bind(f);
          f.sync = async () => {
            synced.push({ dir: String(p), fileThere: (await Deno.stat(path)).isFile });
            await sync();
          };
        }
        return f;
      };
      try {
        for (const overwrite of [false, true]) {
          synced.length = 0;
          assert.ok(await writeFileAtomic(path, `v${overwrite}`, { mode: 0o600, overwrite }));
          assert.deepEqual(synced, [{ dir, fileThere: true }], `overwrite: ${overwrite}`);
        }
      } finally {
        deno.open = open;
      }
    }),
});
