/**
 * UPnP Internet Gateway Device (IGD v1 and v2) control, pure: pick the WAN connection service
 * from a device description, build SOAP requests, read SOAP answers and faults.
 */
import { elements, escapeText, text } from "./_xml.ts";
import type { HttpRequest, HttpResponse } from "./http.ts";
import type { Result } from "../wire/result.ts";

/** Out-arguments read from one SOAP answer, at most (IGD actions return up to 8). */
const MAX_OUT_ARGS = 32;

/** Services that can map ports, best first (IGD v2's WANIPConnection:2 has AddAnyPortMapping). */
export const WAN_SERVICES = [
  "urn:schemas-upnp-org:service:WANIPConnection:2",
  "urn:schemas-upnp-org:service:WANIPConnection:1",
  "urn:schemas-upnp-org:service:WANPPPConnection:1",
] as const;

/** UPnP error codes (in SOAP faults) that change what a client does next. */
export const UpnpError = {
  INVALID_ACTION: 401,
  INVALID_ARGS: 402,
  NO_SUCH_ENTRY: 714,
  CONFLICT: 718,
  ONLY_PERMANENT_LEASES: 725,
} as const;

export interface WanService {
  serviceType: string;
  /** 2 for WANIPConnection:2 (IGD v2), else 1. */
  version: 1 | 2;
  control: URL;
}

/**
 * Finds the best WAN connection service in a device description fetched from `location`.
 * The control URL is resolved against URLBase (UPnP 1.0) or the location, and must stay on the
 * location's host and port: a description cannot send our SOAP requests elsewhere.
 */
export function parseDescription(xml: string, location: URL): Result<WanService> {
  const baseText = text(xml, "URLBase");
  const base = baseText && URL.canParse(baseText) ? new URL(baseText) : location;
  const found: { type: string; control: string }[] = [];
  for (const svc of elements(xml, "service")) {
    const type = text(svc, "serviceType");
    const control = text(svc, "controlURL");
    if (type && control) found.push({ type, control });
  }
  for (const want of WAN_SERVICES) {
    const hit = found.find((f) => f.type === want);
    if (!hit) continue;
    if (!URL.canParse(hit.control, base)) return { ok: false, reason: "bad-control-url" };
    const control = new URL(hit.control, base);
    if (control.protocol !== "http:" || control.host !== location.host) {
      return { ok: false, reason: "foreign-control-url" };
    }
    return {
      ok: true,
      value: { serviceType: want, version: want.endsWith(":2") ? 2 : 1, control },
    };
  }
  return { ok: false, reason: "no-wan-service" };
}

/** A SOAP action request; `args` in the order the service's SCPD lists them. */
export function soapRequest(
  svc: WanService,
  action: string,
  args: [string, string | number][] = [],
): HttpRequest {
  const inner = args.map(([k, v]) => `<${k}>${escapeText(String(v))}</${k}>`).join("");
  const body = '<?xml version="1.0"?>\r\n' +
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ' +
    's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">' +
    `<s:Body><u:${action} xmlns:u="${svc.serviceType}">${inner}</u:${action}></s:Body>` +
    "</s:Envelope>\r\n";
  return {
    method: "POST",
    url: svc.control,
    headers: {
      "Content-Type": 'text/xml; charset="utf-8"',
      SOAPAction: `"${svc.serviceType}#${action}"`,
    },
    body,
  };
}

export type SoapAnswer =
  | { kind: "ok"; values: Record<string, string> }
  | { kind: "fault"; code: number; description: string };

/**
 * Reads the answer to `action`: its output arguments, or a UPnP fault's error code. Anything
 * else (no envelope, wrong response element, a fault without a code) is refused.
 */
export function parseSoapAnswer(res: HttpResponse, action: string): Result<SoapAnswer> {
  const body = elements(res.body, "Body")[0];
  if (body === undefined) return { ok: false, reason: "no-soap-body" };
  const fault = elements(body, "Fault")[0];
  if (fault !== undefined) {
    const code = text(fault, "errorCode");
    if (!code || !/^\d{1,4}$/.test(code)) return { ok: false, reason: "bad-fault" };
    const description = text(fault, "errorDescription") ?? "";
    return { ok: true, value: { kind: "fault", code: Number(code), description } };
  }
  if (res.status !== 200) return { ok: false, reason: `http-${res.status}` };
  const resp = elements(body, `${action}Response`)[0];
  if (resp === undefined) return { ok: false, reason: "no-response-element" };
  const values: Record<string, string> = {};
  for (const m of resp.matchAll(/<([A-Za-z_][\w.-]*)(?:\s[^>]*?)?>/g)) {
    const name = m[1]!;
    if (name in values) continue;
    // Each name rescans the answer: a hostile one with thousands of distinct tags would cost
    // seconds of CPU. A real answer has a handful of out-arguments.
    if (Object.keys(values).length >= MAX_OUT_ARGS) break;
    values[name] = text(resp, name) ?? "";
  }
  return { ok: true, value: { kind: "ok", values } };
}
