package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/internal/testenv"
)

// A fenced block is runnable when its info string is a shell language
// followed by the word "runnable" (```sh runnable): any page in docs/ can
// mark blocks that way, and TestDocsRunnableBlocks runs them.
type docBlock struct {
	line int // of the opening fence
	text string
}

// runnableBlocks returns the runnable shell blocks of a Markdown page, in
// order.
func runnableBlocks(md string) []docBlock {
	var out []docBlock
	var fence string // the open fence, "" outside a block
	var cur *docBlock
	var body strings.Builder
	sc := bufio.NewScanner(strings.NewReader(md))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " ")
		if fence == "" {
			for _, f := range []string{"```", "~~~"} {
				if !strings.HasPrefix(trimmed, f) {
					continue
				}
				width := len(trimmed) - len(strings.TrimLeft(trimmed, f[:1]))
				fence = strings.Repeat(f[:1], width)
				info := strings.Fields(trimmed[width:])
				if len(info) >= 2 && (info[0] == "sh" || info[0] == "bash") && info[1] == "runnable" {
					cur = &docBlock{line: n}
					body.Reset()
				}
				break
			}
			continue
		}
		if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]+" ") == "" {
			if cur != nil {
				cur.text = body.String()
				out = append(out, *cur)
				cur = nil
			}
			fence = ""
			continue
		}
		if cur != nil {
			body.WriteString(line + "\n")
		}
	}
	return out
}

func TestRunnableBlocksExtraction(t *testing.T) {
	md := "intro\n```sh\nnot run\n```\n```sh runnable\necho one\n```\n" +
		"````md\n```sh runnable\ninside another fence: not a block\n```\n````\n" +
		"~~~bash runnable extra\necho two\n~~~\n```runnable\nno language\n```\n"
	got := runnableBlocks(md)
	if len(got) != 2 || got[0].text != "echo one\n" || got[1].text != "echo two\n" || got[0].line != 5 {
		t.Fatalf("blocks %+v", got)
	}
}

// TestDocsRunnableBlocks runs the runnable blocks of every page in docs/,
// verbatim, in order, as one `bash -euo pipefail` script in an empty
// directory, against the suite's MinIO. Pages say which variables they
// expect; the test sets (see docs/deploy-s3.md, step 1):
//
//	S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY  the MinIO
//	AWS_REGION=us-east-1, AWS_EC2_METADATA_DISABLED=true
//	FILES_BUCKET, LOGS_BUCKET                             fresh names, not created
//	SFTP_PORT, METRICS_PORT                               free ports
//	PATH                                                  sftpgw first
//	HOME                                                  an empty directory
func TestDocsRunnableBlocks(t *testing.T) {
	pages, err := filepath.Glob("../docs/*.md")
	if err != nil || len(pages) == 0 {
		t.Fatalf("no docs pages: %v", err)
	}
	ran := 0
	for _, page := range pages {
		src, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		blocks := runnableBlocks(string(src))
		if len(blocks) == 0 {
			continue
		}
		ran++
		t.Run(filepath.Base(page), func(t *testing.T) { runDocPage(t, page, blocks) })
	}
	if ran == 0 {
		t.Fatal("no page in docs/ has a runnable block (docs/deploy-s3.md should)")
	}
}

func runDocPage(t *testing.T, page string, blocks []docBlock) {
	needTool(t, "sftp")
	needTool(t, "ssh-keygen")
	needTool(t, "python3")
	files := testenv.S3(t) // for the endpoint and keys; the page makes its own buckets
	bin := sftpgwBin(t)
	binDir := t.TempDir()
	if err := os.Symlink(bin, filepath.Join(binDir, "sftpgw")); err != nil {
		t.Fatal(err)
	}
	filesBucket, logsBucket := testenv.BucketName(t), testenv.BucketName(t)
	c := testenv.Client(t, files)
	t.Cleanup(func() {
		if err := testenv.RemoveBucket(context.Background(), c, filesBucket); err != nil {
			t.Errorf("remove bucket %s: %v", filesBucket, err)
		}
		// The page locks audit batches for 400 days (compliance mode): no
		// one can delete them, so that bucket stays on the suite's MinIO,
		// whose data directory make test removes.
		if err := testenv.RemoveBucket(context.Background(), c, logsBucket); err != nil {
			t.Logf("audit bucket %s kept: %v", logsBucket, err)
		}
	})

	var script strings.Builder
	for _, b := range blocks {
		fmt.Fprintf(&script, "# %s:%d\n%s", filepath.Base(page), b.line, b.text)
	}
	work, home := t.TempDir(), t.TempDir()
	env := []string{
		"PATH=" + binDir + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + home, "LANG=C.UTF-8",
		"S3_ENDPOINT=" + files.Endpoint,
		"AWS_ACCESS_KEY_ID=" + files.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + files.SecretAccessKey,
		"AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true",
		"FILES_BUCKET=" + filesBucket, "LOGS_BUCKET=" + logsBucket,
		// Picked free just before: a port taken in between fails the run
		// loudly (the gateway cannot listen), it cannot pass wrongly.
		fmt.Sprintf("SFTP_PORT=%d", freeTCPPort(t)), fmt.Sprintf("METRICS_PORT=%d", freeTCPPort(t)),
	}
	if ca := os.Getenv("AWS_CA_BUNDLE"); ca != "" {
		env = append(env, "AWS_CA_BUNDLE="+ca)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-x", "-c", script.String())
	cmd.Dir, cmd.Env = work, env
	// Its own process group: the gateway the page starts in the background
	// is stopped with the script whatever happens.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A file, not a pipe: a background process that outlives the script
	// (the gateway, if a block fails before stopping it) would keep a pipe
	// open and the wait with it.
	outPath := filepath.Join(t.TempDir(), "output")
	outFile, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = outFile, outFile
	start := time.Now()
	err = cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	outFile.Close()
	out, _ := os.ReadFile(outPath)
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(work, "gateway.log"))
		t.Fatalf("%s: the runnable blocks failed: %v\n--- output\n%s\n--- gateway.log\n%s", page, err, out, log)
	}
	t.Logf("%s: %d runnable blocks ran in %s", page, len(blocks), time.Since(start).Round(100*time.Millisecond))
	if strings.Contains(string(out), files.SecretAccessKey) {
		t.Error("the page's commands printed the secret key")
	}
}

func freeTCPPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
