"""Operations layer: backup (archiver), restore, tree walking and the other multi-step jobs."""
