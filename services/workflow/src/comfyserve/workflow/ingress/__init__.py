"""Jobs internal teams ask for on Kafka (`submit-requested` commands)."""
