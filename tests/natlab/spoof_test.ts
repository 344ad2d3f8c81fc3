/**
 * Spoofed sources: an attacker on a public host sends REGISTERs whose IP source is another
 * host's address (nft source NAT on its own egress, so the forged packets really cross the
 * wire). The server must neither register them nor answer the victim with more bytes than the
 * attacker spent. nft counters at both ends measure the bytes; the victim also keeps a socket
 * open at the forged port to see what the server sent.
 */
import assert from "node:assert/strict";
import { type Lab, type LabSpec, unsupported, up } from "./lab.ts";
import { labTests, PORT, wrap } from "./_labtest.ts";
import { must } from "./_sh.ts";
import { Dgram } from "./_dgram.ts";
import { Harness, isType, type Proc } from "../e2e/harness.ts";
import { decode, encode, type Message, registerSigInput } from "../../lib/wire/codec.ts";
import { toHex } from "../../lib/wire/bytes.ts";
import { newIdentity, sign } from "../../lib/identity/identity.ts";

const labTest = labTests(unsupported(), "spoofing lab test");

const FORGED_PORT = 40000; // the attacker's socket whose packets leave with the victim's address
const OWN_PORT = 40001; // the attacker's honest socket
const ROOM = "lobby";
const random = (n: number) => crypto.getRandomValues(new Uint8Array(n));
type Register = Extract<Message, { type: "register" }>;

function register(name: string, key: Uint8Array, cookie: Uint8Array = new Uint8Array(0)): Register {
  const id = toHex(random(8));
  return {
    type: "register",
    id,
    nonce: toHex(random(8)),
    name,
    room: ROOM,
    locals: [],
    key,
    cookie,
    sig: new Uint8Array(0),
  };
}

const nft = (lab: Lab, node: string, ruleset: string) =>
  must(
    `load nft rules in ${node}`,
    "ip",
    ["netns", "exec", lab.nsOf(node), "nft", "-f", "-"],
    ruleset,
  );

/** The message type of a datagram, or "undecodable". */
function typeOf(b: Uint8Array): string {
  const d = decode(b);
  return d.ok ? d.value.type : "undecodable";
}

async function counter(lab: Lab, node: string, table: string, name: string) {
  const cmd = ["netns", "exec", lab.nsOf(node), "nft", "-j", "list", "counter", "ip", table, name];
  const out = await must("read nft counter", "ip", cmd);
  const items = JSON.parse(out).nftables as { counter?: { packets: number; bytes: number } }[];
  return items.find((i) => i.counter)!.counter!;
}

/** A lab with a server running in it; everything is torn down after `fn`. */
async function withLab(spec: LabSpec, fn: (lab: Lab, h: Harness, server: Proc) => Promise<void>) {
  const lab = await up(spec);
  const h = new Harness();
  try {
    const server = h.server(PORT, ["--log-level", "info"], wrap(lab, "server"));
    await server.waitStderr(/listening on/);
    await fn(lab, h, server);
  } finally {
    await h.cleanup();
    await lab.down();
  }
}

labTest("spoofed-source registrations get no registration and no amplified reply", async () => {
  const spec = { sites: [{ name: "a", nat: "full-cone" as const, hosts: 2 }], publicHosts: 2 };
  await withLab(spec, async (lab, h, server) => {
    let serverExited = false;
    server.status.then(() => serverExited = true);
    const srv = lab.server.addrs[0];
    const victim = lab.hosts.pub2!.addr;

    // Attacker pub1: everything from FORGED_PORT to the server leaves with the victim's
    // source address; a later filter hook counts what really went out so.
    await nft(
      lab,
      "pub1",
      `table ip spoof {
          counter forged {}
          chain nat_out {
            type nat hook postrouting priority srcnat; policy accept;
            ip daddr ${srv} udp sport ${FORGED_PORT} snat to ${victim}
          }
          chain count_out {
            type filter hook postrouting priority srcnat + 10; policy accept;
            ip saddr ${victim} ip daddr ${srv} counter name "forged"
          }
        }`,
    );
    // Victim pub2: count every byte the server's network sends it, any protocol or port
    // (unicast only: the lab's bridge multicasts an IGMP report now and then).
    await nft(
      lab,
      "pub2",
      `table ip watch {
          counter from_server {}
          chain in {
            type filter hook prerouting priority raw; policy accept;
            ip saddr 198.51.100.0/24 ip daddr ${victim} counter name "from_server"
          }
        }`,
    );
    const atVictim = await Dgram.start(lab, "pub2", "0.0.0.0", FORGED_PORT);
    const forged = await Dgram.start(lab, "pub1", "0.0.0.0", FORGED_PORT);
    const own = await Dgram.start(lab, "pub1", "0.0.0.0", OWN_PORT);

    // The strongest forgery: a cookie the attacker legitimately got for its own address,
    // with a valid signature; only the source address is wrong.
    const me = newIdentity();
    await own.send(srv, PORT, encode(register("mallory", me.edPublic)));
    await own.until(() => own.received.length > 0, "the attacker's own COOKIE");
    const cookie = decode(own.received[0]!.bytes);
    assert.ok(cookie.ok && cookie.value.type === "cookie", "the server answers with a COOKIE");
    const stolen = register("carol", me.edPublic, cookie.value.cookie);
    stolen.sig = sign(me, registerSigInput(stolen));

    const attempts = [
      register("carol", random(32)), // first try, no cookie
      { ...register("carol", random(32), random(16)), sig: random(64) }, // forged cookie
      stolen,
    ];
    for (const m of attempts) await forged.send(srv, PORT, encode(m));
    // Proves the forged packets reached the server and the victim's capture works.
    await atVictim.until(() => atVictim.received.length > 0, "a reply at the victim");

    // Control: the same cookie and key from the attacker's real address do register, so
    // the forged REGISTER failed for its address alone.
    const honest = register("mallory", me.edPublic, cookie.value.cookie);
    honest.sig = sign(me, registerSigInput(honest));
    await own.send(srv, PORT, encode(honest));
    await own.until(
      () => own.received.some((r) => typeOf(r.bytes) === "register_ok"),
      "REGISTER_OK for the attacker's honest registration",
    );

    // Legitimate peers: alice sees the room as the server holds it; carol claims her name.
    const addr = `${srv}:${PORT}`;
    const alice = h.peer("alice", addr, ["--room", ROOM], wrap(lab, "a1"));
    await alice.waitFor(isType("ready"), 20000, "alice registered");
    await alice.waitFor(isType("peer", { name: "mallory" }), 20000, "alice sees mallory");
    const sawCarol = (p: Proc) => p.events.some(isType("peer", { name: "carol" }));
    assert.equal(sawCarol(alice), false, "no member named carol before the real carol joins");
    const carol = h.peer("carol", addr, ["--room", ROOM], wrap(lab, "a2"));
    await carol.waitFor(isType("ready"), 20000, "the real carol registered (name not taken)");
    await alice.waitFor(isType("peer", { name: "carol", state: "joined" }), 20000);

    const joins = server.stderr.filter((l) => /carol joined/.test(l));
    assert.equal(joins.length, 1, `one carol registration:\n${server.stderr.join("\n")}`);
    assert.match(
      joins[0]!,
      new RegExp(`from ${lab.routers.a!.publicAddr.replaceAll(".", "\\.")}:`),
    );

    // Everything the server sent to the victim was small: cookies or errors, in total no
    // more bytes than the attacker spent (the registrations above are a barrier: the server
    // handled the forged datagrams long before).
    for (const r of atVictim.received) {
      assert.ok(["cookie", "error"].includes(typeOf(r.bytes)), `victim got ${toHex(r.bytes)}`);
    }
    const sent = await counter(lab, "pub1", "spoof", "forged");
    const got = await counter(lab, "pub2", "watch", "from_server");
    assert.equal(
      sent.packets,
      attempts.length,
      "every forged datagram left with the victim's address",
    );
    assert.ok(got.packets >= 1, "the victim received the server's answer");
    assert.ok(
      got.bytes <= sent.bytes,
      `no amplification: victim got ${got.bytes} B for ${sent.bytes} B sent`,
    );
    assert.equal(serverExited, false, "the server is still running");
  });
});
