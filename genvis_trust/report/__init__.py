"""Reports: JSON schema, HTML report and plots."""
