"""Jobs: submit, read, list, cancel and watch workflow executions."""
