"""Fleet commands over many archived sessions: `rayhistory compact` and `rayhistory sql`, on this machine or
fanned out as Ray tasks (`--ray-address`)."""
