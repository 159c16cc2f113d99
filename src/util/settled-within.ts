/**
 * Waits for `p` at most `ms`: true once it has resolved, false when the time ran out first (it
 * goes on; a rejection after that is handled here and dropped). A rejection in time passes on.
 */
export async function settledWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([p.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}
