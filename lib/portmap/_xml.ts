/**
 * Just enough XML for UPnP descriptions and SOAP answers: find elements by local name (any
 * namespace prefix) and read their text. Tolerant and total: malformed input gives fewer or no
 * matches, never an exception. Not a general parser: no DTDs, no attributes, CDATA as text.
 */

/** Strips comments, processing instructions and CDATA markers, so they cannot fake tags. */
function clean(xml: string): string {
  return xml
    .replace(/<!--[\s\S]*?(-->|$)/g, "")
    .replace(/<\?[\s\S]*?(\?>|$)/g, "")
    .replace(/<!\[CDATA\[([\s\S]*?)(\]\]>|$)/g, (_, t: string) => escapeText(t));
}

const NAME = "(?:[A-Za-z_][\\w.-]*:)?";

/**
 * The inner XML of every `<name>` element (any prefix), outermost first, in document order.
 * Nested elements of the same name are returned as part of the outer one only.
 */
export function elements(xml: string, name: string): string[] {
  const src = clean(xml);
  const safe = name.replace(/[^\w.-]/g, "");
  const open = new RegExp(`<(${NAME}${safe})(\\s[^>]*?)?(/?)>`, "g");
  const out: string[] = [];
  let m: RegExpExecArray | null;
  while ((m = open.exec(src)) !== null) {
    if (m[3] === "/") {
      out.push("");
      continue;
    }
    const tag = m[1]!;
    const start = open.lastIndex;
    // Find the matching close tag, counting nested opens of the same tag.
    const scan = new RegExp(`<(/?)${tag.replace(/[.]/g, "\\.")}(\\s[^>]*?)?(/?)>`, "g");
    scan.lastIndex = start;
    let depth = 1;
    let s: RegExpExecArray | null;
    let end = -1;
    while ((s = scan.exec(src)) !== null) {
      if (s[1] === "/") depth--;
      else if (s[3] !== "/") depth++;
      if (depth === 0) {
        end = s.index;
        break;
      }
    }
    if (end < 0) break; // unclosed: the rest of the document is not trustworthy
    out.push(src.slice(start, end));
    open.lastIndex = scan.lastIndex;
  }
  return out;
}

/** The text of the first `<name>` element, tags removed and entities decoded, trimmed. */
export function text(xml: string, name: string): string | undefined {
  const first = elements(xml, name)[0];
  if (first === undefined) return undefined;
  return decodeEntities(first.replace(/<[^>]*>/g, "")).trim();
}

const ENTITIES: Record<string, string> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
};

/** Decodes the five named entities and numeric character references; unknown ones stay as is. */
export function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]{1,6}|#\d{1,7}|[a-z]+);/g, (whole, body: string) => {
    if (body[0] === "#") {
      const code = body[1] === "x" ? parseInt(body.slice(2), 16) : parseInt(body.slice(1), 10);
      return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
    }
    return ENTITIES[body] ?? whole;
  });
}

/** Escapes text for use as element content. */
export function escapeText(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
