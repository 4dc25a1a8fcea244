"""What a person reads: the evaluation as markdown, the report's tables and figures,
runs read back at a git revision (compare, experiments) and the experiments page."""
