/**
 * Runs `work` for every item with at most `limit` calls in flight, and returns the results in the
 * order of `items` (not the order they finish in). A rejection rejects the whole call once the
 * calls in flight have settled; callers that want one failure per item catch inside `work`.
 */
export async function mapConcurrently<Item, Result>(
  items: readonly Item[],
  limit: number,
  work: (item: Item, index: number) => Promise<Result>,
): Promise<Result[]> {
  const results: Result[] = new Array<Result>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(Math.max(1, Math.floor(limit)), items.length) }, async () => {
    while (next < items.length) {
      const index = next;
      next += 1;
      results[index] = await work(items[index] as Item, index);
    }
  });
  const settled = await Promise.allSettled(workers);
  const failure = settled.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
  if (failure !== undefined) throw failure.reason;
  return results;
}
