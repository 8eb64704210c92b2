-- The node a `local` backend's directory is on (its Ray node label `bp-node`, actors/node_roles.py):
-- its actor is pinned there and never recreated on another node. NULL: not pinned (a
-- one-machine deployment, or an S3 backend, reachable from any node).
ALTER TABLE backends ADD COLUMN node_label TEXT;
