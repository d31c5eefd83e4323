package onboard

import (
	"bytes"
	"fmt"
	"strings"
	"text/template"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/vfs"
)

// typeLabels says what each vfs file type is, in the applicant's words.
var typeLabels = map[string]string{
	"pdf": "PDF (.pdf)", "jpeg": "JPEG images (.jpg, .jpeg)", "png": "PNG images (.png)",
	"docx": "Word (.docx)", "xlsx": "Excel (.xlsx)", "odt": "OpenDocument text (.odt)",
	"txt": "plain text (.txt)",
}

var readmeTmpl = template.Must(template.New("readme").Parse(`UPLOADING YOUR DOCUMENTS
========================

Your account:  {{.User}}
Server:        {{.Host}}
Port:          {{.Port}}
{{- if .Expires}}
Valid until:   {{.Expires}} (the account stops working then)
{{- end}}

This folder holds your personal access key. It works like a password:
keep it to yourself and do not pass it on. The server does NOT keep a copy
of it; if you lose it, ask for a new invitation.

  key.ppk             your key for FileZilla and PuTTY
  key                 the same key for OpenSSH (sftp)
  key.pub             its public half (the server already knows it)
  filezilla-site.xml  the server settings for FileZilla
  known_hosts         the server's identity, for sftp
  README.txt          this sheet

THE SERVER'S IDENTITY
The first time you connect, your program shows the server's key
fingerprint. Continue only if it is exactly:
{{range .Fingerprints}}
  {{.}}
{{- end}}
{{if .Limits}}
WHAT YOU CAN UPLOAD
{{range .Limits}}  {{.}}
{{end}}{{end}}
WITH FILEZILLA (Windows, macOS, Linux)
  1. Keep this folder where you will find it again.
  2. In FileZilla choose File > Import..., select filezilla-site.xml.
  3. Open File > Site Manager and select "{{.SiteName}}".
     Next to "Key file" click Browse... and pick key.ppk in this folder.
     (By hand instead: Protocol SFTP, Host {{.Host}}, Port {{.Port}},
     Logon Type "Key file", User {{.User}}, Key file key.ppk.)
  4. Click Connect. When FileZilla asks about the server's host key,
     compare the fingerprint with the one above, then trust it.
  5. Drag your documents into the right-hand (server) side.
  If the server refuses a file, the reason is shown in the message log
  at the top of the window.

WITH SFTP (macOS, Linux, Windows 10/11 command line)
  Open a terminal in this folder (on macOS/Linux first run: chmod 600 key):

    sftp -i key -o IdentitiesOnly=yes -o UserKnownHostsFile=known_hosts -o StrictHostKeyChecking=yes -P {{.Port}} {{.User}}@{{.Host}}

  At the sftp> prompt:  put "My CV.pdf"   then  ls -l   and  bye

WITH PUTTY (Windows)
    psftp -i key.ppk -P {{.Port}} {{.User}}@{{.Host}}
  Compare the fingerprint when asked, then use put as with sftp.
`))

// Readme renders the instruction sheet.
func Readme(o Options) []byte {
	if err := o.check(); err != nil {
		return nil
	}
	data := struct {
		User, Host, SiteName, Expires string
		Port                          int
		Fingerprints, Limits          []string
	}{User: o.User, Host: o.Host, Port: o.Port, SiteName: o.SiteName, Limits: limitLines(o.Limits)}
	if !o.ExpiresAt.IsZero() {
		data.Expires = o.ExpiresAt.UTC().Format("2 January 2006, 15:04 UTC")
	}
	for _, k := range o.HostKeys {
		data.Fingerprints = append(data.Fingerprints, fmt.Sprintf("%s  (%s)", ssh.FingerprintSHA256(k), k.Type()))
	}
	var b bytes.Buffer
	if err := readmeTmpl.Execute(&b, data); err != nil {
		panic(err) // a template bug, caught by the tests
	}
	return b.Bytes()
}

func limitLines(l vfs.Limits) []string {
	var out []string
	if len(l.AllowedTypes) > 0 {
		var labels []string
		for _, t := range l.AllowedTypes {
			if s, ok := typeLabels[t]; ok {
				labels = append(labels, s)
			} else {
				labels = append(labels, t)
			}
		}
		out = append(out, "File types: "+strings.Join(labels, ", ")+".",
			"  The content must really be of that type (a renamed file is refused).")
	}
	if l.MaxFileSize > 0 {
		out = append(out, "At most "+vfs.FormatSize(l.MaxFileSize)+" per file.")
	}
	switch {
	case l.QuotaBytes > 0 && l.QuotaFiles > 0:
		out = append(out, fmt.Sprintf("At most %d files and %s in total.", l.QuotaFiles, vfs.FormatSize(l.QuotaBytes)))
	case l.QuotaBytes > 0:
		out = append(out, "At most "+vfs.FormatSize(l.QuotaBytes)+" in total.")
	case l.QuotaFiles > 0:
		out = append(out, fmt.Sprintf("At most %d files in total.", l.QuotaFiles))
	}
	return out
}
