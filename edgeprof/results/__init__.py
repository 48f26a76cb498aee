"""Result rows: the column schema and the rows, CSV and metadata a run writes."""
