"""The MrFlow daemon: an asyncio websockets server in front of one GPU worker thread.

Read in this order: `config` (settings from file, environment and flags),
`auth` (the per-user token and the browser-origin policy), `jobs` (the job
model, the FIFO queue and result retention), `models` (lazy loading of
engines that stay resident), `worker` (the thread that runs engine jobs one
at a time), `messages` (engine events and results as protocol messages),
`session` (one websocket connection) and `app` (the server itself).
"""
