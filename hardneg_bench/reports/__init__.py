"""Reports and paper tables: the run report, the experiment tables with `reproduce`, the published
numbers they are set beside, and the files they write."""
