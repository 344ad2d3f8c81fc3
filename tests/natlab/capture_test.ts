/**
 * Eavesdropping: tshark records the links a chat crosses (the server's link and two sites'
 * public links) while two pairs of real peers chat, one pair direct and one relayed through
 * the server. The capture must hold the registrations (names travel in clear to the server)
 * and none of the message text.
 */
import assert from "node:assert/strict";
import { type Lab, type SiteSpec, unsupported, up } from "./lab.ts";
import { labTests, missingTool, PORT, wrap } from "./_labtest.ts";
import { Harness, isType, type Proc } from "../e2e/harness.ts";

const labTest = labTests(
  unsupported() ?? missingTool({ tshark: "tshark" }),
  "packet capture lab test",
);

/** Plain ASCII search in raw bytes: latin1 maps every byte to one character. */
const holds = (bytes: Uint8Array, text: string) =>
  new TextDecoder("latin1").decode(bytes).includes(text);

/** A lab with a server running in it; everything is torn down after `fn`. */
async function withLab(
  sites: SiteSpec[],
  fn: (lab: Lab, h: Harness, addr: string) => Promise<void>,
) {
  const lab = await up({ sites });
  const h = new Harness();
  try {
    const server = h.server(PORT, [], wrap(lab, "server"));
    await server.waitStderr(/listening on/);
    await fn(lab, h, `${lab.server.addrs[0]}:${PORT}`);
  } finally {
    await h.cleanup();
    await lab.down();
  }
}

/**
 * `tshark -w` on one interface of a lab node. Capture start is not announced reliably, and
 * dumpcap writes the file in bursts, so `mark()` sends a unique datagram out of that
 * interface and waits until the file holds it: everything that crossed the link before a
 * mark is in the file.
 */
class Capture {
  private stderr = "";
  private constructor(
    private lab: Lab,
    readonly node: string,
    readonly file: string,
    private child: Deno.ChildProcess,
  ) {
    child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
      new WritableStream({ write: (t) => void (this.stderr += t) }),
    ).catch(() => {});
    child.stdout.pipeTo(new WritableStream()).catch(() => {}); // -w: tshark writes none
  }

  static async start(lab: Lab, node: string, iface: string, dir: string): Promise<Capture> {
    const file = `${dir}/${node.replace(":", "-")}.pcap`;
    const child = lab.spawn(node, ["tshark", "-n", "-i", iface, "-F", "pcap", "-w", file], {
      stdin: "null",
    });
    const c = new Capture(lab, node, file, child);
    await c.mark();
    return c;
  }

  async bytes(): Promise<Uint8Array> {
    return await Deno.readFile(this.file).catch(() => new Uint8Array());
  }

  /** Sends marks out of the captured link until one shows up in the file. */
  async mark(ms = 30_000): Promise<void> {
    const text = `mark-${crypto.randomUUID()}`;
    // Any address beyond the link will do; nobody needs to answer.
    const to = this.node === "server" ? this.lab.routers.a!.publicAddr : this.lab.server.addrs[0];
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      await this.lab.exec(this.node, ["bash", "-c", `echo -n ${text} > /dev/udp/${to}/9`]);
      for (let i = 0; i < 10; i++) {
        await new Promise((r) => setTimeout(r, 100));
        if (holds(await this.bytes(), text)) return;
      }
    }
    throw new Error(`capture on ${this.node} did not record a mark in ${ms} ms: ${this.stderr}`);
  }

  /** Stops tshark (SIGINT lets it flush) and returns the capture file's bytes. */
  async stop(): Promise<Uint8Array> {
    this.child.kill("SIGINT");
    await this.child.status;
    assert.doesNotMatch(this.stderr, /[1-9]\d* packets? dropped/, `${this.node}: tshark dropped`);
    return await this.bytes();
  }
}

const hex = () => crypto.getRandomValues(new Uint32Array(1))[0]!.toString(16);

/** Starts two peers in `room`, waits for their path, exchanges one secret each way. */
async function chat(h: Harness, lab: Lab, addr: string, hosts: [string, string], room: string) {
  const names = hosts.map((n) => `${n}-${hex()}`) as [string, string];
  const [a, b] = names.map((n, i) => h.peer(n, addr, ["--room", room], wrap(lab, hosts[i]!)));
  const pa = await a!.waitFor(isType("path", { peer: names[1] }), 30000, `${room}: path`);
  await b!.waitFor(isType("path", { peer: names[0] }), 30000, `${room}: path`);
  const secrets = [`secret-${crypto.randomUUID()}`, `secret-${crypto.randomUUID()}`];
  const pairs: [Proc, Proc, string, string][] = [
    [a!, b!, names[1], secrets[0]!],
    [b!, a!, names[0], secrets[1]!],
  ];
  for (const [from, to, toName, text] of pairs) {
    await from.write(text);
    await to.waitFor(isType("message", { text }), 30000, `${room}: message to ${toName}`);
    await from.waitFor(isType("delivered", { to: toName }), 30000, `${room}: delivery report`);
  }
  return { names, secrets, path: pa.path as string };
}

labTest(
  "a packet capture of a chat, direct and relayed, contains none of the message text",
  async () => {
    const sites: SiteSpec[] = [
      { name: "a", nat: "full-cone" },
      { name: "b", nat: "full-cone" },
      { name: "c", nat: "symmetric" },
      { name: "d", nat: "symmetric" },
    ];
    const dir = await Deno.makeTempDir({ prefix: "p2pchat-pcap-" });
    try {
      await withLab(sites, async (lab, h, addr) => {
        const caps = await Promise.all([
          Capture.start(lab, "server", "eth0", dir),
          Capture.start(lab, "router:a", "wan", dir), // the direct pair's public link
          Capture.start(lab, "router:c", "wan", dir), // the relayed pair's public link
        ]);
        const direct = await chat(h, lab, addr, ["a1", "b1"], "direct");
        const relayed = await chat(h, lab, addr, ["c1", "d1"], "relayed");
        assert.equal(direct.path, "direct", "full-cone <-> full-cone connects directly");
        assert.equal(relayed.path, "relay", "symmetric <-> symmetric is relayed");
        // A mark after the last delivery: every chat packet on each link is in its file.
        await Promise.all(caps.map((c) => c.mark()));
        const [srv, linkA, linkC] = await Promise.all(caps.map((c) => c.stop()));

        // The captures work: names are sent in clear in REGISTER to the server.
        for (const n of [...direct.names, ...relayed.names]) {
          assert.ok(holds(srv!, n), `server link capture holds the name ${n}`);
        }
        assert.ok(holds(linkA!, direct.names[0]), `site a's capture holds ${direct.names[0]}`);
        assert.ok(holds(linkC!, relayed.names[0]), `site c's capture holds ${relayed.names[0]}`);

        const leaks: string[] = [];
        const files = { "server eth0": srv!, "router:a wan": linkA!, "router:c wan": linkC! };
        for (const [where, bytes] of Object.entries(files)) {
          for (const s of [...direct.secrets, ...relayed.secrets]) {
            if (holds(bytes, s)) leaks.push(`${s} in ${where}`);
          }
        }
        assert.deepEqual(leaks, [], "message text readable in the captures");
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
