"""ComfyUI's native server API over our jobs and files (API.md Part B), in the
newest (G3) shapes, every route at `/x` and at `/api/x`: the queue and history
(`prompts`), the G3 jobs API (`jobs_api`), the node catalog and status routes
(`system`), uploads and downloads (`files`), and the WebSocket (`ws`, fed by
`routing`). Every route sees only the caller's tenant."""
