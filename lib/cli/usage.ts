/** What the command line's modules share: the user-mistake error and the secret variables. */

/** A mistake of the user's: print `message` on one line, exit 2. */
export class UsageError extends Error {}

/** Environment variables that carry a room secret or an invite code (never a flag's value). */
export const SECRET_ENV = "P2PCHAT_ROOM_SECRET";
export const INVITE_ENV = "P2PCHAT_INVITE";
