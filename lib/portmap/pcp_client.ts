/** PCP (RFC 6887) MAP client for one UDP port, over the edge in `_io.ts`. */
import {
  decodeResponse,
  encodeAnnounceRequest,
  encodeMapRequest,
  OPCODE_ANNOUNCE,
  OPCODE_MAP,
  PCP_SERVER_PORT,
  PcpResult,
  pcpResultName,
  PROTO_UDP,
} from "./pcp.ts";
import { udpExchange } from "./_io.ts";
import { usableExternal } from "./route.ts";
import { type ClientContext, type MapperClient, type Mapping, resendSchedule } from "./types.ts";
import { equalBytes } from "../wire/bytes.ts";
import type { Result } from "../wire/result.ts";

export class PcpClient implements MapperClient {
  readonly protocol = "pcp";
  /** One nonce for the mapping's whole life: renewals and the delete must repeat it. */
  private readonly nonce: Uint8Array;
  private held: Mapping | null = null;
  /** The server that answered the probe (the first candidate until one has). */
  private server: string | undefined;

  constructor(private readonly ctx: ClientContext) {
    this.nonce = ctx.random(12);
    this.server = ctx.gateways[0];
  }

  /** A server and the address it sees us at, which every request must name. */
  private client(server = this.server): { gateway: string; self: string } | null {
    if (!server) return null;
    const self = this.ctx.localAddress(server);
    return self ? { gateway: server, self } : null;
  }

  async probe(signal: AbortSignal): Promise<boolean> {
    const gateways = this.ctx.gateways;
    const out = gateways.flatMap((g) => {
      const c = this.client(g);
      return c
        ? [{ hostname: g, port: PCP_SERVER_PORT, bytes: encodeAnnounceRequest(c.self) }]
        : [];
    });
    if (out.length === 0) return false;
    const answer = await udpExchange({
      out,
      accept: (bytes, from) => {
        if (!gateways.includes(from.hostname) || from.port !== PCP_SERVER_PORT) return undefined;
        const r = decodeResponse(bytes);
        if (!r.ok) return r.reason === "natpmp" ? null : undefined; // a NAT-PMP-only server
        if (r.value.opcode !== OPCODE_ANNOUNCE || r.value.result !== PcpResult.SUCCESS) {
          return undefined;
        }
        return from.hostname;
      },
      resendMs: resendSchedule(this.ctx.timeoutMs),
      signal,
    });
    if (answer) this.server = answer;
    return Boolean(answer);
  }

  private async request(lifetimeSec: number, signal: AbortSignal) {
    const c = this.client();
    if (!c) return null;
    const bytes = encodeMapRequest({
      nonce: this.nonce,
      client: c.self,
      internalPort: this.ctx.internalPort,
      lifetimeSec,
      suggestedPort: this.held?.external.port ?? this.ctx.internalPort,
      suggestedHost: this.held?.external.host,
    });
    return await udpExchange({
      out: [{ hostname: c.gateway, port: PCP_SERVER_PORT, bytes }],
      accept: (data, from) => {
        if (from.hostname !== c.gateway || from.port !== PCP_SERVER_PORT) return undefined;
        const r = decodeResponse(data);
        if (!r.ok || r.value.opcode !== OPCODE_MAP) return undefined;
        const m = r.value.map;
        // An error answer may be a bare header; a full one must be about our mapping.
        if (m && (!equalBytes(m.nonce, this.nonce) || m.internalPort !== this.ctx.internalPort)) {
          return undefined;
        }
        if (m && m.protocol !== PROTO_UDP) return undefined;
        return r.value;
      },
      resendMs: resendSchedule(this.ctx.requestTimeoutMs),
      signal,
    });
  }

  async map(leaseSec: number): Promise<Result<Mapping>> {
    const r = await this.request(leaseSec, AbortSignal.timeout(this.ctx.requestTimeoutMs));
    if (!r) return { ok: false, reason: "no-answer" };
    if (r.result !== PcpResult.SUCCESS) return { ok: false, reason: pcpResultName(r.result) };
    if (!r.map || !usableExternal(r.map.externalHost) || r.map.externalPort === 0) {
      // The server made a mapping nobody outside can use (another NAT beyond it): undo it.
      await this.request(0, AbortSignal.timeout(this.ctx.requestTimeoutMs));
      this.held = null;
      return { ok: false, reason: `bad-external ${r.map?.externalHost ?? "none"}` };
    }
    this.held = {
      protocol: "pcp",
      external: { host: r.map.externalHost, port: r.map.externalPort },
      internalPort: this.ctx.internalPort,
      leaseSec: r.lifetimeSec,
    };
    return { ok: true, value: this.held };
  }

  async unmap(signal: AbortSignal): Promise<void> {
    if (!this.held) return;
    const r = await this.request(0, signal);
    this.ctx.log(`pcp: delete ${r ? pcpResultName(r.result) : "unanswered"}`);
    this.held = null;
  }
}
