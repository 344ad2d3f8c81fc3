/**
 * UPnP IGD v1/v2 client for one UDP port: SSDP search, device description, then SOAP
 * GetExternalIPAddress and AddAnyPortMapping (v2) or AddPortMapping (v1), DeletePortMapping.
 */
import { httpExchange, udpExchange } from "./_io.ts";
import {
  parseDescription,
  parseSoapAnswer,
  soapRequest,
  UpnpError,
  type WanService,
} from "./igd.ts";
import type { SoapAnswer } from "./igd.ts";
import { usableExternal } from "./route.ts";
import {
  decodeSearchAnswer,
  encodeSearch,
  IGD_SEARCH_TARGETS,
  SSDP_ADDR,
  SSDP_PORT,
} from "./ssdp.ts";
import { type ClientContext, type MapperClient, type Mapping, resendSchedule } from "./types.ts";
import type { Result } from "../wire/result.ts";

/** What we call our mappings on the gateway (shown by its admin page and `upnpc -l`). */
export const MAPPING_DESCRIPTION = "p2pchat";
/** External ports tried after a conflict (IGD v1 cannot pick one for us). */
const CONFLICT_RETRIES = 3;

export class UpnpClient implements MapperClient {
  readonly protocol = "upnp";
  private location: URL | null = null;
  private service: WanService | null = null;
  private held: Mapping | null = null;

  constructor(private readonly ctx: ClientContext) {}

  /** SSDP search: multicast, plus unicast to the likely gateways (UDA 1.1 answers at once). */
  async probe(signal: AbortSignal): Promise<boolean> {
    const out = [];
    for (const st of IGD_SEARCH_TARGETS) {
      const bytes = encodeSearch(st);
      out.push({ hostname: SSDP_ADDR, port: SSDP_PORT, bytes });
      for (const g of this.ctx.gateways) out.push({ hostname: g, port: SSDP_PORT, bytes });
    }
    let ignored = 0;
    const location = await udpExchange({
      out,
      accept: (bytes, from) => {
        const r = decodeSearchAnswer(bytes, from.hostname);
        // Say why the first bad answer was ignored; a flood of them is not worth more lines.
        if (!r.ok && ignored++ === 0) {
          this.ctx.log(`upnp: ignored SSDP answer from ${from.hostname}: ${r.reason}`);
        }
        return r.ok ? r.value.location : undefined;
      },
      resendMs: resendSchedule(this.ctx.timeoutMs),
      signal,
    });
    if (location && location.href !== this.location?.href) this.service = null;
    if (location) this.location = location;
    return location !== null;
  }

  private async call(
    action: string,
    args: [string, string | number][],
  ): Promise<Result<SoapAnswer>> {
    const svc = this.service;
    if (!svc) return { ok: false, reason: "no-service" };
    const res = await httpExchange(
      soapRequest(svc, action, args),
      AbortSignal.timeout(this.ctx.requestTimeoutMs),
    );
    if (!res.ok) return res;
    return parseSoapAnswer(res.value, action);
  }

  private async describe(): Promise<Result<WanService>> {
    if (this.service) return { ok: true, value: this.service };
    if (!this.location) return { ok: false, reason: "not-found" };
    const res = await httpExchange(
      { method: "GET", url: this.location },
      AbortSignal.timeout(this.ctx.requestTimeoutMs),
    );
    if (!res.ok) return res;
    if (res.value.status !== 200) return { ok: false, reason: `http-${res.value.status}` };
    const svc = parseDescription(res.value.body, this.location);
    if (svc.ok) {
      this.service = svc.value;
      this.ctx.log(`upnp: ${svc.value.serviceType} at ${svc.value.control.href}`);
    }
    return svc;
  }

  private addArgs(
    self: string,
    externalPort: number,
    leaseSec: number,
  ): [string, string | number][] {
    return [
      ["NewRemoteHost", ""],
      ["NewExternalPort", externalPort],
      ["NewProtocol", "UDP"],
      ["NewInternalPort", this.ctx.internalPort],
      ["NewInternalClient", self],
      ["NewEnabled", 1],
      ["NewPortMappingDescription", MAPPING_DESCRIPTION],
      ["NewLeaseDuration", leaseSec],
    ];
  }

  /** Adds (or refreshes) the mapping; returns the external port, or why not. */
  private async add(
    self: string,
    leaseSec: number,
  ): Promise<Result<{ port: number; lease: number }>> {
    const svc = this.service!;
    if (svc.version === 2 && !this.held) {
      const r = await this.call(
        "AddAnyPortMapping",
        this.addArgs(self, this.ctx.internalPort, leaseSec),
      );
      if (!r.ok) return r;
      if (r.value.kind === "ok") {
        const port = Number(r.value.values.NewReservedPort);
        if (Number.isInteger(port) && port > 0 && port < 65536) {
          return { ok: true, value: { port, lease: leaseSec } };
        }
        return { ok: false, reason: "bad-reserved-port" };
      }
      if (r.value.code !== UpnpError.INVALID_ACTION) {
        return { ok: false, reason: `upnp-${r.value.code}` };
      }
      // A v2 device without AddAnyPortMapping: fall through to AddPortMapping.
    }
    let port = this.held?.external.port ?? this.ctx.internalPort;
    let lease = leaseSec;
    for (let attempt = 0; attempt <= CONFLICT_RETRIES; attempt++) {
      const r = await this.call("AddPortMapping", this.addArgs(self, port, lease));
      if (!r.ok) return r;
      if (r.value.kind === "ok") return { ok: true, value: { port, lease } };
      if (r.value.code === UpnpError.ONLY_PERMANENT_LEASES && lease !== 0) {
        lease = 0;
        attempt--;
        continue;
      }
      if (r.value.code !== UpnpError.CONFLICT || this.held) {
        return { ok: false, reason: `upnp-${r.value.code}` };
      }
      const b = this.ctx.random(2);
      port = 1024 + (((b[0]! << 8) | b[1]!) % (65536 - 1024));
    }
    return { ok: false, reason: "upnp-conflict" };
  }

  async map(leaseSec: number): Promise<Result<Mapping>> {
    const svc = await this.describe();
    if (!svc.ok) return svc;
    const self = this.ctx.localAddress(svc.value.control.hostname);
    if (!self) return { ok: false, reason: "no-local-address" };
    const ip = await this.call("GetExternalIPAddress", []);
    if (!ip.ok) return ip;
    if (ip.value.kind === "fault") return { ok: false, reason: `upnp-${ip.value.code}` };
    const host = ip.value.values.NewExternalIPAddress ?? "";
    if (!usableExternal(host)) return { ok: false, reason: `bad-external ${host}` };
    const added = await this.add(self, leaseSec);
    if (!added.ok) return added;
    this.held = {
      protocol: "upnp",
      external: { host, port: added.value.port },
      internalPort: this.ctx.internalPort,
      leaseSec: added.value.lease,
    };
    return { ok: true, value: this.held };
  }

  async unmap(signal: AbortSignal): Promise<void> {
    const svc = this.service;
    const held = this.held;
    if (!svc || !held) return;
    this.held = null;
    const res = await httpExchange(
      soapRequest(svc, "DeletePortMapping", [
        ["NewRemoteHost", ""],
        ["NewExternalPort", held.external.port],
        ["NewProtocol", "UDP"],
      ]),
      signal,
    );
    const r = res.ok ? parseSoapAnswer(res.value, "DeletePortMapping") : res;
    const what = !r.ok ? r.reason : r.value.kind === "ok" ? "ok" : `upnp-${r.value.code}`;
    this.ctx.log(`upnp: delete ${what}`);
  }
}
