"""How a service runs: logging, gRPC, Kafka and database plumbing. No domain
logic; imports only `comfyserve.contracts`."""
