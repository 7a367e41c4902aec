"""Latency of MCP `tools/call` from one keep-alive HTTP/1.1 client.

    python3 mcp_keepalive.py PORT CREDENTIAL_FILE CALLS [TOOL]

Opens one connection to http://127.0.0.1:PORT/mcp with the bearer in
CREDENTIAL_FILE, initializes a session, then makes CALLS sequential
`tools/call TOOL {"sql": "SELECT 1"}` with unique JSON-RPC ids on that same
connection, and prints p50 and p99. Every answer must be a successful tool
result. Run by conformance/bench/mcp-keepalive.sh.
"""
import http.client, json, sys, time, statistics
port=int(sys.argv[1]); cred=open(sys.argv[2]).read().strip(); n=int(sys.argv[3]); tool=sys.argv[4] if len(sys.argv)>4 else "shop_query"
c=http.client.HTTPConnection('127.0.0.1',port)
h={'Content-Type':'application/json','Accept':'application/json, text/event-stream','Authorization':'Bearer '+cred}
def post(msg,extra={}):
    c.request('POST','/mcp',json.dumps(msg),{**h,**extra}); r=c.getresponse(); b=r.read(); return r,b
r,b=post({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"b","version":"1"}}})
sid=r.getheader('mcp-session-id'); s={'Mcp-Session-Id':sid,'MCP-Protocol-Version':'2025-11-25'}
post({"jsonrpc":"2.0","method":"notifications/initialized"},s)
lat=[]
for i in range(1,n+1):
    t=time.perf_counter()
    r,b=post({"jsonrpc":"2.0","id":i,"method":"tools/call","params":{"name":tool,"arguments":{"sql":"SELECT 1"}}},s)
    lat.append((time.perf_counter()-t)*1000)
    assert r.status==200 and b'"isError":false' in b.replace(b' ',b''), b[:300]
lat.sort()
print("calls %d p50 %.1f ms p99 %.1f ms"%(n,statistics.median(lat),lat[int(n*0.99)-1]))
