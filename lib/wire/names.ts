/** Names and rooms: 1-32 characters of letters, digits, "-", "_" and ".". */
export const NAME_RULE = "1-32 characters of letters, digits, '-', '_' or '.'";

const NAME = /^[A-Za-z0-9_.-]{1,32}$/;

export function validName(s: string): boolean {
  return NAME.test(s);
}
