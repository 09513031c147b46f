"""Overdue rules and the jobs that raise and escalate alerts (issue 4); calls casework's services."""
