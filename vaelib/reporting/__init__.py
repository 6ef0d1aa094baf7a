"""Reports: notebooks run with papermill, rendered with nbconvert, their pages and parameters."""
