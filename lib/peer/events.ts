/** What a peer reports to its user: the `--json` lines, one object each (see README). */
export type PeerEvent =
  /** `locked`: the room has a secret, and every peer in it proved it (to us and the server). */
  /** `transport`: how we reach the server, "udp" or "ws" (WebSocket, when UDP is blocked). */
  | {
    type: "ready";
    name: string;
    room: string;
    public: string;
    local: string[];
    locked: boolean;
    transport?: "udp" | "ws";
  }
  /** Our traffic to the server moved to another transport (`why` says what we saw). */
  | { type: "transport"; transport: "udp" | "ws"; server: string; why: string }
  | { type: "peer"; name: string; state: "joined"; fingerprint: string }
  | { type: "peer"; name: string; state: "left" }
  /** The peer's key differs from the one pinned for its name: nothing flows until /trust. */
  | { type: "key_changed"; peer: string; fingerprint: string }
  | {
    type: "path";
    peer: string;
    path: "lan" | "direct" | "relay";
    addr: string;
    rtt_ms: number | null;
    /**
     * What carries the path: "udp", or for `relay` the server's transport ("udp" or "ws"); "tcp"
     * for a direct path over a TCP connection (TCP hole punching; `addr` is its remote end).
     */
    transport?: "udp" | "ws" | "tcp";
  }
  | { type: "message"; from: string; to: string; text: string; id: string }
  | { type: "delivered"; to: string; id: string }
  | { type: "undelivered"; to: string; id: string }
  /**
   * What the peer found out about its NAT (in the background, once, and again when a gateway
   * mapping changes): RFC 5780 mapping and filtering, port allocation, and the address a
   * gateway mapped for us (UPnP, NAT-PMP or PCP; null without one).
   */
  | {
    type: "nat";
    /** False: the server saw this host's own address (no NAT); "unknown" if not known. */
    natted: boolean | "unknown";
    mapping: string;
    filtering: string;
    allocation: string;
    public: string | null;
    mapped: string | null;
    portmap: string | null;
  }
  | { type: "error"; message: string };
