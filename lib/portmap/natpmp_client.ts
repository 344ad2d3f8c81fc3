/** NAT-PMP (RFC 6886) client for one UDP port, over the edge in `_io.ts`. */
import {
  decodeResponse,
  encodeExternalAddressRequest,
  encodeMapRequest,
  NatPmpResult,
  natPmpResultName,
  OP_EXTERNAL_ADDRESS,
  OP_MAP_UDP,
} from "./natpmp.ts";
import { PCP_SERVER_PORT } from "./pcp.ts";
import { udpExchange } from "./_io.ts";
import { usableExternal } from "./route.ts";
import { type ClientContext, type MapperClient, type Mapping, resendSchedule } from "./types.ts";
import type { Result } from "../wire/result.ts";

/** NAT-PMP servers listen on the port PCP later took over. */
const NATPMP_PORT = PCP_SERVER_PORT;

export class NatPmpClient implements MapperClient {
  readonly protocol = "natpmp";
  private held: Mapping | null = null;
  /** The server that answered the probe (the first candidate until one has). */
  private server: string | undefined;

  constructor(private readonly ctx: ClientContext) {
    this.server = ctx.gateways[0];
  }

  private fromGateway(from: { hostname: string; port: number }): boolean {
    return from.hostname === this.server && from.port === NATPMP_PORT;
  }

  async probe(signal: AbortSignal): Promise<boolean> {
    const gateways = this.ctx.gateways;
    if (gateways.length === 0) return false;
    const bytes = encodeExternalAddressRequest();
    const answer = await udpExchange({
      out: gateways.map((g) => ({ hostname: g, port: NATPMP_PORT, bytes })),
      accept: (data, from) => {
        if (!gateways.includes(from.hostname) || from.port !== NATPMP_PORT) return undefined;
        const r = decodeResponse(data);
        if (!r.ok || r.value.op !== OP_EXTERNAL_ADDRESS) return undefined;
        return r.value.result === NatPmpResult.SUCCESS ? from.hostname : undefined;
      },
      resendMs: resendSchedule(this.ctx.timeoutMs),
      signal,
    });
    if (answer) this.server = answer;
    return Boolean(answer);
  }

  async map(leaseSec: number): Promise<Result<Mapping>> {
    const gateway = this.server;
    if (!gateway) return { ok: false, reason: "no-gateway" };
    // The mapping answer does not say the external address: ask for both at once.
    let external: string | null = null;
    let mapped: { result: number; externalPort: number; lifetimeSec: number } | null = null;
    const done = await udpExchange({
      out: [
        {
          hostname: gateway,
          port: NATPMP_PORT,
          bytes: encodeMapRequest({
            internalPort: this.ctx.internalPort,
            suggestedPort: this.held?.external.port ?? this.ctx.internalPort,
            lifetimeSec: leaseSec,
          }),
        },
        { hostname: gateway, port: NATPMP_PORT, bytes: encodeExternalAddressRequest() },
      ],
      accept: (bytes, from) => {
        if (!this.fromGateway(from)) return undefined;
        const r = decodeResponse(bytes);
        if (!r.ok) return undefined;
        const v = r.value;
        if (v.op === OP_EXTERNAL_ADDRESS) {
          if (v.result !== NatPmpResult.SUCCESS) return natPmpResultName(v.result);
          external = v.externalHost;
        } else if (v.op === OP_MAP_UDP) {
          if (v.result !== NatPmpResult.SUCCESS) return natPmpResultName(v.result);
          if (v.internalPort !== this.ctx.internalPort) return undefined;
          mapped = v;
        }
        return external !== null && mapped !== null ? "ok" : undefined;
      },
      resendMs: resendSchedule(this.ctx.requestTimeoutMs),
      signal: AbortSignal.timeout(this.ctx.requestTimeoutMs),
    });
    if (done === null) return { ok: false, reason: "no-answer" };
    if (done !== "ok" || external === null || mapped === null) return { ok: false, reason: done };
    const m: { externalPort: number; lifetimeSec: number } = mapped;
    if (!usableExternal(external) || m.externalPort === 0) {
      // The server made a mapping nobody outside can use (another NAT beyond it): undo it.
      await this.delete(AbortSignal.timeout(this.ctx.requestTimeoutMs));
      this.held = null;
      return { ok: false, reason: `bad-external ${external}` };
    }
    this.held = {
      protocol: "natpmp",
      external: { host: external, port: m.externalPort },
      internalPort: this.ctx.internalPort,
      leaseSec: m.lifetimeSec,
    };
    return { ok: true, value: this.held };
  }

  async unmap(signal: AbortSignal): Promise<void> {
    if (!this.held) return;
    this.held = null;
    await this.delete(signal);
  }

  /** Lifetime 0 with external port 0 deletes this internal port's mapping (RFC 6886 §3.4). */
  private async delete(signal: AbortSignal): Promise<void> {
    const gateway = this.server;
    if (!gateway) return;
    const bytes = encodeMapRequest({
      internalPort: this.ctx.internalPort,
      suggestedPort: 0,
      lifetimeSec: 0,
    });
    const r = await udpExchange({
      out: [{ hostname: gateway, port: NATPMP_PORT, bytes }],
      accept: (data, from) => {
        if (!this.fromGateway(from)) return undefined;
        const d = decodeResponse(data);
        return d.ok && d.value.op === OP_MAP_UDP ? natPmpResultName(d.value.result) : undefined;
      },
      resendMs: resendSchedule(this.ctx.requestTimeoutMs),
      signal,
    });
    this.ctx.log(`natpmp: delete ${r ?? "unanswered"}`);
  }
}
