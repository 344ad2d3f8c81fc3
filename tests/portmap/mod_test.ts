import assert from "node:assert/strict";
import { type Mapping, PortMapper } from "../../lib/portmap/mod.ts";
import type { ClientContext, MapperClient, Protocol } from "../../lib/portmap/types.ts";
import type { Result } from "../../lib/wire/result.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A scripted protocol client that records what the port mapper asked of it. */
class Fake implements MapperClient {
  calls: string[] = [];
  port = 40000;
  constructor(
    readonly protocol: Protocol,
    readonly script: {
      probeMs?: number;
      answers?: boolean;
      probeThrows?: boolean;
      mapMs?: number;
      refuse?: string;
      leaseSec?: number;
    } = {},
  ) {}
  probe(signal: AbortSignal): Promise<boolean> {
    this.calls.push("probe");
    if (this.script.probeThrows) return Promise.reject(new Error("boom"));
    return new Promise((resolve) => {
      // Without an answer, a probe only ends when its signal aborts (as udpExchange does).
      const t = this.script.answers === false
        ? undefined
        : setTimeout(() => resolve(true), this.script.probeMs ?? 0);
      signal.addEventListener("abort", () => {
        clearTimeout(t);
        resolve(false);
      }, { once: true });
    });
  }
  async map(leaseSec: number): Promise<Result<Mapping>> {
    this.calls.push(`map ${leaseSec}`);
    await sleep(this.script.mapMs ?? 0);
    if (this.script.refuse) return { ok: false, reason: this.script.refuse };
    return {
      ok: true,
      value: {
        protocol: this.protocol,
        external: { host: "100.63.0.1", port: this.port },
        internalPort: 40000,
        leaseSec: this.script.leaseSec ?? leaseSec,
      },
    };
  }
  unmap(): Promise<void> {
    this.calls.push("unmap");
    return Promise.resolve();
  }
}

function mapper(
  clients: MapperClient[],
  extra: Partial<ConstructorParameters<typeof PortMapper>[0]> = {},
) {
  const seen: ClientContext[] = [];
  const pm = new PortMapper({
    internalPort: 40000,
    gateway: "192.168.77.1",
    localAddress: "192.168.77.10",
    timeoutMs: 100,
    clients: (ctx) => {
      seen.push(ctx);
      return clients;
    },
    ...extra,
  });
  return { pm, seen };
}

Deno.test("portmap: the preferred protocol that answers maps, even if another answers first", async () => {
  const pcp = new Fake("pcp", { probeMs: 30 });
  const upnp = new Fake("upnp", { probeMs: 1 });
  const { pm, seen } = mapper([pcp, upnp]);
  const m = await pm.start();
  assert.equal(m?.protocol, "pcp");
  assert.deepEqual(pcp.calls, ["probe", "map 3600"]);
  assert.deepEqual(upnp.calls, ["probe"], "only one protocol ever maps");
  assert.deepEqual(seen[0]?.gateways, ["192.168.77.1"]);
  assert.equal(seen[0]?.localAddress("192.168.77.1"), "192.168.77.10");
  await pm.stop();
  assert.deepEqual(pcp.calls, ["probe", "map 3600", "unmap"]);
  assert.equal(pm.mapping, null);
});

Deno.test("portmap: a refused mapping falls back to the next protocol that answered", async () => {
  const pcp = new Fake("pcp", { refuse: "NOT_AUTHORIZED" });
  const natpmp = new Fake("natpmp", { answers: false });
  const upnp = new Fake("upnp");
  const logs: string[] = [];
  const { pm } = mapper([pcp, natpmp, upnp], { log: (l) => logs.push(l) });
  const m = await pm.start();
  assert.equal(m?.protocol, "upnp");
  assert.deepEqual(natpmp.calls, ["probe"]);
  assert.ok(
    logs.some((l) => l.includes("pcp: cannot map port 40000: NOT_AUTHORIZED")),
    logs.join("\n"),
  );
  await pm.stop();
  assert.deepEqual(pcp.calls, ["probe", "map 3600"], "a refused protocol has nothing to delete");
});

Deno.test("portmap: nobody answering costs about the timeout, and gives null", async () => {
  const clients = [new Fake("pcp", { answers: false }), new Fake("upnp", { probeThrows: true })];
  const { pm } = mapper(clients, { timeoutMs: 80 });
  const t0 = performance.now();
  assert.equal(await pm.start(), null);
  const ms = performance.now() - t0;
  assert.ok(ms >= 75 && ms < 300, `took ${ms} ms`);
  await pm.stop();
});

Deno.test("portmap: start() twice is one discovery", async () => {
  const pcp = new Fake("pcp");
  const { pm } = mapper([pcp]);
  const [a, b] = await Promise.all([pm.start(), pm.start()]);
  assert.equal(a, b);
  assert.deepEqual(pcp.calls, ["probe", "map 3600"]);
  await pm.stop();
});

Deno.test("portmap: stop() during a slow mapping returns in bounded time and still deletes it", async () => {
  const pcp = new Fake("pcp", { mapMs: 300 });
  const { pm } = mapper([pcp], { stopTimeoutMs: 50 });
  const started = pm.start();
  await sleep(20);
  const t0 = performance.now();
  await pm.stop();
  const ms = performance.now() - t0;
  assert.ok(ms < 200, `stop took ${ms} ms`);
  assert.equal((await started)?.protocol, "pcp");
  await sleep(20);
  assert.deepEqual(pcp.calls, ["probe", "map 3600", "unmap"], "the late mapping was deleted");
});

Deno.test("portmap: stop() during discovery gives null and maps nothing", async () => {
  const pcp = new Fake("pcp", { answers: false });
  const { pm } = mapper([pcp], { timeoutMs: 5000 });
  const started = pm.start();
  await sleep(10);
  await pm.stop();
  assert.equal(await started, null);
  assert.deepEqual(pcp.calls, ["probe"]);
});

Deno.test("portmap: renews at half-time and reports a changed port", async () => {
  const pcp = new Fake("pcp");
  const changes: (Mapping | null)[] = [];
  const { pm } = mapper([pcp], {
    leaseSec: 0.1,
    lease: { minRenewMs: 0 },
    onChange: (m) => changes.push(m),
  });
  assert.equal((await pm.start())?.external.port, 40000);
  await sleep(70); // renewed once at 50 ms, same mapping: no change reported
  assert.deepEqual(pcp.calls, ["probe", "map 0.1", "map 0.1"]);
  assert.deepEqual(changes, []);
  pcp.port = 40001;
  await sleep(50);
  assert.equal(changes.length, 1);
  assert.equal((changes[0] as Mapping | undefined)?.external.port, 40001);
  assert.equal(pm.mapping?.external.port, 40001);
  await pm.stop();
  assert.equal(pcp.calls.at(-1), "unmap");
});

Deno.test("portmap: renewals failing until the lease ends report the mapping lost", async () => {
  const pcp = new Fake("pcp");
  const changes: (Mapping | null)[] = [];
  const { pm } = mapper([pcp], {
    leaseSec: 1,
    lease: { minRenewMs: 0, retryMs: 200, rediscoverMs: 60_000 },
    onChange: (m) => changes.push(m),
  });
  await pm.start();
  pcp.script.refuse = "NO_RESOURCES";
  await sleep(1700); // renew at 500, retries at ~750, ~1000: expired
  assert.deepEqual(changes, [null]);
  assert.equal(pm.mapping, null);
  await pm.stop();
  assert.ok(!pcp.calls.includes("unmap"), "nothing left to delete");
});

Deno.test("portmap: without a gateway NAT-PMP and PCP answer null at once", async () => {
  const pm = new PortMapper({ internalPort: 40000, gateway: null, protocols: ["pcp", "natpmp"] });
  const t0 = performance.now();
  assert.equal(await pm.start(), null);
  assert.ok(performance.now() - t0 < 50);
  await pm.stop();
});

Deno.test("portmap: start() after stop() does nothing", async () => {
  const pcp = new Fake("pcp");
  const { pm } = mapper([pcp]);
  await pm.stop();
  assert.equal(await pm.start(), null);
  assert.deepEqual(pcp.calls, []);
});

Deno.test("portmap: with no mapping at first, a later discovery finds one and says so", async () => {
  const pcp = new Fake("pcp", { answers: false });
  const changes: (Mapping | null)[] = [];
  const { pm } = mapper([pcp], {
    timeoutMs: 20,
    lease: { rediscoverMs: 60 },
    onChange: (m) => changes.push(m),
  });
  assert.equal(await pm.start(), null);
  pcp.script.answers = true; // the router came up
  await sleep(150);
  assert.equal(changes.length, 1);
  assert.equal(changes[0]?.protocol, "pcp");
  assert.equal(pm.mapping?.protocol, "pcp");
  await pm.stop();
  assert.equal(pcp.calls.at(-1), "unmap");
});
