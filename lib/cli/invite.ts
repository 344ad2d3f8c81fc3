/**
 * `p2pchat invite`: a fresh secret for a locked room, the invite code that carries it
 * (lib/wire/invite.ts), and what to tell the user about it.
 * @module
 */
import { type Addr, formatAddr } from "../wire/addr.ts";
import { base64url, encodeInvite } from "../wire/invite.ts";
import { type RandomBytes, systemRandom } from "../crypto/keys.ts";

/** Random bytes in a new secret: 256 bits, far beyond any guessing. */
export const SECRET_BYTES = 32;

/** A fresh random secret, as text (base64url of 32 random bytes, 43 characters). */
export function newSecret(random: RandomBytes = systemRandom): string {
  return base64url(random(SECRET_BYTES));
}

/** A new invite to `room` on `server`, with a fresh secret. */
export function newInvite(server: Addr, room: string, random?: RandomBytes): string {
  return encodeInvite({ server: formatAddr(server), room, secret: newSecret(random) });
}

/** What `p2pchat invite` says on stderr under the code: what to do with it. */
export function inviteHint(server: Addr, room: string): string {
  return `Invite to the locked room "${room}" on ${
    formatAddr(server)
  } (above). Send it privately:\n` +
    "whoever has it can join. Everyone, you too, joins by running\n" +
    "  p2pchat join --invite --name NAME\n" +
    "and pasting it when asked (scripts: $P2PCHAT_INVITE or --invite-file FILE).\n";
}
