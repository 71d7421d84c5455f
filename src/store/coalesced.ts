/**
 * Runs `task` one at a time. A request that arrives while a run is going may not be in what that
 * run read, so it asks for exactly one more run after it rather than being folded into it or
 * starting a second one beside it. Failures go to `onError`; the next request runs again.
 */
export function coalesced(
  task: () => Promise<void>,
  onError: (error: unknown) => void,
  stopped: () => boolean = () => false,
): { request(): void; running(): Promise<void> | undefined } {
  let current: Promise<void> | undefined;
  let again = false;
  const request = (): void => {
    if (stopped()) return;
    if (current) {
      again = true;
      return;
    }
    again = false;
    current = task()
      .catch(onError)
      .finally(() => {
        current = undefined;
        if (again) request();
      });
  };
  return { request, running: () => current };
}
