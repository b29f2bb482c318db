"""Out of descriptors: N sequential WebSocket upgrades against a pod under `ulimit -n 96`;
counts upgraded, closed (shed) and hung (no answer within 3 s), and lists clients slower than
0.5 s. Usage: python3 emfile.py SHARDS [N] (POD: the binary, default target/debug/distrisocks)."""
import os, socket, subprocess, sys, time, re, tempfile
BIN = os.environ.get("POD", "target/debug/distrisocks")
shards = sys.argv[1]
d = tempfile.mkdtemp()
p = subprocess.Popen(["sh","-c",f"ulimit -n 96 && exec {BIN} --listen 127.0.0.1:0 --data-dir {d} --store-full-sync false --shards {shards} --max-connections 10000"], stderr=subprocess.PIPE, text=True)
addr=None
for line in p.stderr:
    m = re.search(r"pod started.*addr=(\S+)", line)
    if m: addr=m.group(1); break
host,port=addr.rsplit(":",1)
req="GET /ws?user_id=u{n} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
opened=[];shed=0;hung=0
t0=time.time()
slow=[]
for n in range(int(sys.argv[2]) if len(sys.argv)>2 else 150):
    t1=time.time()
    s=socket.create_connection((host,int(port)))
    tc=time.time()-t1
    s.settimeout(3)
    s.sendall(req.format(n=n).encode())
    try:
        h=s.recv(12)
        if h==b"HTTP/1.1 101": opened.append(s)
        else: shed+=1; s.close()
    except socket.timeout:
        hung+=1; s.close()
    except ConnectionResetError:
        shed+=1
    dt=time.time()-t1
    if dt>0.5: slow.append((n,round(tc,2),round(dt,2)))
print(slow[:10]); print(f"shards={shards} open={len(opened)} shed={shed} hung={hung} secs={time.time()-t0:.1f}")
p.kill()
