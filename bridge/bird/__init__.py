"""Bird API: request shapes, retry policy, rate limiting (pure) and the aiohttp client."""
