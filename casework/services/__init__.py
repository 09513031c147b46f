"""Services: one function per thing a user does, each its own transaction."""
