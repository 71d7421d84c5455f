/**
 * Klaviyo's error answers as its docs show them (JSON:API `errors`), shared by the plain and the
 * batched Klaviyo contracts: https://developers.klaviyo.com/en/docs/rate_limits_and_error_handling
 */
export const klaviyoError = (status: number, code: string, title: string, detail: string) => ({
  errors: [
    {
      id: 'e4eebb08-b055-4a6f-bb13-c8cb69c9eb94',
      status,
      code,
      title,
      detail,
      source: { pointer: '/data/' },
    },
  ],
});

export const throttled = klaviyoError(
  429,
  'throttled',
  'Request was throttled.',
  'Request was throttled. Expected available in 1 second.',
);

export const invalid = klaviyoError(400, 'invalid', 'Invalid input.', "Invalid email address 'not-an-email'");
