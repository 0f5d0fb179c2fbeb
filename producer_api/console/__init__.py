"""The console: a web page served by the API process at `/console`, a client of the same
routes as any key (docs/api.md#console). `routes`: its page, files and session routes;
`sessions`: the sign-in sessions the auth path accepts; `static/`: the page itself."""
