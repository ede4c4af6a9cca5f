"""Constraints shared by request fields."""

# Some databases cannot store NUL characters in text: refusing them answers 422, not 500.
NO_NUL = r"^[^\x00]*$"
# Also no line breaks: the value goes into a single header line.
ONE_LINE = r"^[^\x00\r\n]*$"
# Past this, an offset is a mistake; it also stays within every database's integers.
MAX_OFFSET = 2**31 - 1
