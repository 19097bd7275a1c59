"""Recording a live show (`vj live --record DIR`): the folder layout, its writer and the readers of its parts."""
