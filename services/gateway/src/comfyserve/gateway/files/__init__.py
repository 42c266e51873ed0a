"""Files: uploads for use in workflows, their metadata and their content."""
