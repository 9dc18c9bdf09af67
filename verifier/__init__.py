"""The requester side of cod: node selection, dispatch to N nodes, comparison of signed
result CIDs, node reputation and the dashboard.

Empty until Stage 2 (issue "Stage 2: compute nodes, signed results and the N-way
verifier"); the package exists so that the layout and the packaging are fixed now.
"""
