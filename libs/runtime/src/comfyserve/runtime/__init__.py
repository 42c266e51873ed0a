"""How a service runs: logging, gRPC and Kafka plumbing. No domain logic; imports
only `comfyserve.contracts`."""
