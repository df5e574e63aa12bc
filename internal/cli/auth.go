package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/registry"
)

func newLoginCommand() *cobra.Command {
	var (
		user, password string
		passwordStdin  bool
	)
	cmd := &cobra.Command{
		Use:   "login [OPTIONS] [SERVER]",
		Short: "Log in to a registry",
		Long:  "Log in to a registry. Without SERVER, Docker Hub. Credentials are stored as docker login stores them ($DOCKER_CONFIG/config.json, or its credential helper).",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			server := ""
			if len(args) == 1 {
				server = args[0]
			}
			err := login(cmd, server, user, password, passwordStdin)
			return clientError(err)
		},
	}
	cmd.Flags().StringVarP(&user, "username", "u", "", "Username")
	cmd.Flags().StringVarP(&password, "password", "p", "", "Password")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "Take the password from stdin")
	return cmd
}

func login(cmd *cobra.Command, server, user, password string, passwordStdin bool) error {
	if password != "" {
		fmt.Fprintln(cmd.ErrOrStderr(), "WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
		if passwordStdin {
			return fmt.Errorf("--password and --password-stdin are mutually exclusive: %w", errdefs.ErrInvalidArgument)
		}
	}
	stdin := cmd.InOrStdin()
	if passwordStdin {
		if user == "" {
			return fmt.Errorf("Must provide --username with --password-stdin: %w", errdefs.ErrInvalidArgument)
		}
		b, err := io.ReadAll(io.LimitReader(stdin, 64<<10))
		if err != nil {
			return err
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	_, host := registry.ServerKey(server)
	opts, err := registryOptions("")
	if err != nil {
		return err
	}
	// The interruptible context covers the registry calls only: around
	// the prompts, Ctrl-C must end the command, not be caught.
	tryLogin := func(u, p string) error {
		ctx, stop := interruptible()
		defer stop()
		_, err := registry.Login(ctx, server, u, p, opts...)
		return err
	}
	if user == "" && password == "" {
		// As docker login: credentials stored before are tried first; when
		// the registry refuses them, say so and ask.
		if u, p, err := registry.StoredCredentials(server); err == nil && u != "" && p != "" {
			fmt.Fprintln(cmd.OutOrStdout(), "Authenticating with existing credentials...")
			err := tryLogin(u, p)
			if err == nil {
				fmt.Fprintln(cmd.OutOrStdout(), "Login Succeeded")
				return nil
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Login did not succeed, error: %s\n", userMessage(err))
		}
	}
	tty := term.IsTerminal(int(os.Stdin.Fd())) && stdin == os.Stdin
	if user == "" || password == "" {
		if !tty {
			return fmt.Errorf("login to %s: no credentials: give -u and --password-stdin (or run on a terminal to be asked): %w", host, errdefs.ErrInvalidArgument)
		}
		r := bufio.NewReader(os.Stdin)
		if user == "" {
			fmt.Fprint(cmd.OutOrStdout(), "Username: ")
			line, err := r.ReadString('\n')
			if err != nil {
				return fmt.Errorf("read user name: %w", err)
			}
			user = strings.TrimSpace(line)
		}
		if password == "" {
			fmt.Fprint(cmd.OutOrStdout(), "Password: ")
			b, err := term.ReadPassword(int(os.Stdin.Fd()))
			fmt.Fprintln(cmd.OutOrStdout())
			if err != nil {
				return fmt.Errorf("read password: %w", err)
			}
			password = string(b)
		}
	}
	if err := tryLogin(user, password); err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), "Login Succeeded")
	return nil
}

func newLogoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logout [SERVER]",
		Short: "Log out from a registry",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			server := ""
			if len(args) == 1 {
				server = args[0]
			}
			key, host := registry.ServerKey(server)
			had, err := registry.Logout(server)
			if err != nil {
				return clientError(err)
			}
			if key == registry.DockerHubServer {
				host = key
			}
			if !had {
				fmt.Fprintf(cmd.OutOrStdout(), "Not logged in to %s\n", host)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removing login credentials for %s\n", host)
			return nil
		},
	}
}
