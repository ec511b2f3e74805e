"""Card enrolment pages (issue 15)."""
