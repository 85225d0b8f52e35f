"""The ground floor both packages stand on: one-line errors, atomic files, progress bars."""
